// vault-plugin-rotation: stand-in for Lineal's (scale-diverging) helper.
import { helper } from '@ember/component/helper';
import { EmptyScale } from '../scale.js';

export default helper(() => new EmptyScale());
