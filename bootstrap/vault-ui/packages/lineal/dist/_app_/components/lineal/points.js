export { default } from '@lineal-viz/lineal/components/lineal/points/index.js';
