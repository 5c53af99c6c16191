export { default } from '@lineal-viz/lineal/helpers/scale-diverging.js';
