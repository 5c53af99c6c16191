#!/usr/bin/env node
// vault-plugin-rotation: makes the pinned Vault's ui/ (a writable copy) installable from the npm registry alone.
// usage: node prepare.mjs UI_DIR
//
// Vault's ui/package.json names seven packages that the npm registry does not serve:
//   - three forks on GitHub, `broccoli-sri-hash`, `ember-cli-sri` (subresource integrity attributes in index.html) and
//     `ember-service-worker` (only for lib/service-worker-authenticated-download, which lets the raft snapshot
//     download carry the token): removed, with that lib addon;
//   - `@hashicorp/design-system-components@4.20.1` and `@hashicorp/flight-icons@3.12.0` (through ^3.11.0), versions
//     the registry no longer serves: 4.20.2 and 3.14.0;
//   - `@lineal-viz/lineal` and `@hashicorp/vault-client-typescript`, absent: our own packages in
//     bootstrap/vault-ui/packages, copied by the caller into UI_DIR/local-packages (portal: dependencies).
// Their entries are dropped from yarn.lock, and yarn.lock.patch (next to this file) then pins what the registry
// resolved them to, so that `yarn install --immutable` checks the result.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const ui = process.argv[2];
if (!ui) throw new Error('usage: node prepare.mjs UI_DIR');
const pkgPath = join(ui, 'package.json');
const pkg = JSON.parse(readFileSync(pkgPath, 'utf8'));

const removed = ['broccoli-sri-hash', 'ember-cli-sri', 'ember-service-worker'];
for (const name of removed) {
  for (const section of ['dependencies', 'devDependencies']) delete pkg[section]?.[name];
}
pkg['ember-addon'].paths = pkg['ember-addon'].paths.filter((p) => p !== 'lib/service-worker-authenticated-download');

const set = (name, version) => {
  let done = false;
  for (const section of ['dependencies', 'devDependencies']) {
    if (pkg[section]?.[name] !== undefined) {
      pkg[section][name] = version;
      done = true;
    }
  }
  if (!done) throw new Error(`prepare: ${name} is not in ${pkgPath}`);
};
set('@hashicorp/design-system-components', '4.20.2');
set('@lineal-viz/lineal', 'portal:./local-packages/lineal');
set('@hashicorp/vault-client-typescript', 'portal:./local-packages/vault-client-typescript');
pkg.resolutions = {
  ...pkg.resolutions,
  '@hashicorp/flight-icons': '3.14.0',
  '@lineal-viz/lineal': 'portal:./local-packages/lineal',
};
writeFileSync(pkgPath, JSON.stringify(pkg, null, 2) + '\n');

// Drop the lock entries of the packages above; yarn resolves them again (the patch pins the result).
const lockPath = join(ui, 'yarn.lock');
const blocks = readFileSync(lockPath, 'utf8').split(/\n\n/);
const names = [...removed, '@hashicorp/design-system-components', '@hashicorp/flight-icons', '@lineal-viz/lineal', '@hashicorp/vault-client-typescript'];
const drop = (block) => {
  const head = block.split('\n')[0];
  return names.some((n) => head.startsWith(`"${n}@`) || head.startsWith(`${n}@`));
};
writeFileSync(lockPath, blocks.filter((b) => !drop(b)).join('\n\n'));
