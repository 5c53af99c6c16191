export { default } from '@lineal-viz/lineal/components/lineal/line/index.js';
