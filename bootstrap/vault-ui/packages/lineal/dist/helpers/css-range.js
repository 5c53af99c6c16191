// vault-plugin-rotation: stand-in for Lineal's (css-range) helper.
import { helper } from '@ember/component/helper';

export default helper(() => []);
