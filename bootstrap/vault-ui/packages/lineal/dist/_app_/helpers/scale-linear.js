export { default } from '@lineal-viz/lineal/helpers/scale-linear.js';
