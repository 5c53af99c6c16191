export { default } from '@lineal-viz/lineal/components/lineal/h-bars/index.js';
