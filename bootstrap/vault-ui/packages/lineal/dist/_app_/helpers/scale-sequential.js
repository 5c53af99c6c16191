export { default } from '@lineal-viz/lineal/helpers/scale-sequential.js';
