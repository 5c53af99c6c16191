export { default } from '@lineal-viz/lineal/helpers/css-range.js';
