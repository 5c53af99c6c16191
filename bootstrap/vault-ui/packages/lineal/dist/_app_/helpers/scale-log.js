export { default } from '@lineal-viz/lineal/helpers/scale-log.js';
