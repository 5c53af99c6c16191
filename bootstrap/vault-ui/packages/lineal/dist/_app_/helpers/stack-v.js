export { default } from '@lineal-viz/lineal/helpers/stack-v.js';
