export { default } from '@lineal-viz/lineal/helpers/scale-time.js';
