// vault-plugin-rotation: stand-in for Lineal's (stack-h) helper.
import { helper } from '@ember/component/helper';

export default helper((/* positional, named */) => ({ data: [], isValid: false }));
