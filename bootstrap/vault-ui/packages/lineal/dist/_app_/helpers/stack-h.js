export { default } from '@lineal-viz/lineal/helpers/stack-h.js';
