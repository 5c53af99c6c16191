export { default } from '@lineal-viz/lineal/helpers/scale-sqrt.js';
