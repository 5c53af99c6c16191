export { default } from '@lineal-viz/lineal/components/lineal/area/index.js';
