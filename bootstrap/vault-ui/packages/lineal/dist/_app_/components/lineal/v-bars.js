export { default } from '@lineal-viz/lineal/components/lineal/v-bars/index.js';
