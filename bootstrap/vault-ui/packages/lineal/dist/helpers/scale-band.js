// vault-plugin-rotation: stand-in for Lineal's (scale-band) helper.
import { helper } from '@ember/component/helper';
import { EmptyScale } from '../scale.js';

export default helper(() => new EmptyScale());
