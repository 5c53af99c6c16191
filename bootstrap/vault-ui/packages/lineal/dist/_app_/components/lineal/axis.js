export { default } from '@lineal-viz/lineal/components/lineal/axis/index.js';
