export { default } from '@lineal-viz/lineal/components/lineal/bars/index.js';
