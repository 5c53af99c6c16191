export { default } from '@lineal-viz/lineal/helpers/scale-ordinal.js';
