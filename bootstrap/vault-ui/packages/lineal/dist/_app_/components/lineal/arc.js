export { default } from '@lineal-viz/lineal/components/lineal/arc/index.js';
