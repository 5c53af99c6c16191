export { default } from '@lineal-viz/lineal/helpers/scale-pow.js';
