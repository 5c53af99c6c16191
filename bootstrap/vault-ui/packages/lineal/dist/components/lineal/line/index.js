// vault-plugin-rotation: stand-in for Lineal's <Lineal::line> component; renders nothing (no charts).
import templateOnly from '@ember/component/template-only';
import { setComponentTemplate } from '@ember/component';
import { precompileTemplate } from '@ember/template-compilation';

export default setComponentTemplate(precompileTemplate('', { strictMode: true }), templateOnly());
