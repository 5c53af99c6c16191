export { default } from '@lineal-viz/lineal/components/lineal/arcs/index.js';
