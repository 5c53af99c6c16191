export { default } from '@lineal-viz/lineal/components/lineal/fluid/index.js';
