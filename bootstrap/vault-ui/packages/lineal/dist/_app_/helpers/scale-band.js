export { default } from '@lineal-viz/lineal/helpers/scale-band.js';
