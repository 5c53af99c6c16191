#!/usr/bin/env node
// vault-plugin-rotation: writes index.js, our stand-in for @hashicorp/vault-client-typescript, from the OpenAPI
// document of the pinned Vault (GET /v1/sys/internal/specs/openapi with generic_mount_paths, every builtin plugin
// mounted: bootstrap/build-vault-ui.sh does that).
//
// For each operation, in the class of its tag (auth: AuthApi, identity: IdentityApi, secrets: SecretsApi, system:
// SystemApi), two methods named after the camelCased operationId, the calling convention the Vault UI is written
// against:
//   name(param1, param2, ..., body, initOverrides)  -> the response body (its `data` when the response has a schema)
//   nameRaw({ param1, param2, ..., Body }, initOverrides) -> { raw: Response, value() }
// Parameters are its path's (those the operation does not redefine), then the operation's own, then the JSON request body (named after its schema), required
// ones first. Enum parameters and enum fields of request bodies also export string enums (XxxYyyEnum.TRUE = 'true').
//
// usage: node gen.mjs openapi.json > index.js
import { readFileSync } from 'node:fs';

const spec = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const METHODS = ['get', 'put', 'post', 'delete', 'patch', 'head', 'options'];
const CLASSES = { auth: 'AuthApi', identity: 'IdentityApi', secrets: 'SecretsApi', system: 'SystemApi' };

const words = (s) => String(s).split(/[^A-Za-z0-9]+/).filter(Boolean);
const pascal = (s) => words(s).map((w) => w[0].toUpperCase() + w.slice(1)).join('');
const camel = (s) => {
  const p = pascal(s);
  return p[0].toLowerCase() + p.slice(1);
};
const enumKey = (v) => {
  const k = String(v).replace(/[^A-Za-z0-9]+/g, '_').replace(/^_+|_+$/g, '').toUpperCase();
  return /^[0-9]/.test(k) || k === '' ? `_${k}` : k;
};
const RESERVED = new Set(
  ('arguments await break case catch class const continue debugger default delete do else enum eval export extends ' +
    'false finally for function if implements import in instanceof interface let new null package private protected ' +
    'public return static super switch this throw true try typeof var void while with yield initOverrides r')
    .split(' ')
);
// ident is a parameter's name as a JavaScript identifier (X-Vault-Token: X_Vault_Token; a reserved word gets a _).
const ident = (s) => {
  const id = String(s).replace(/[^A-Za-z0-9_$]/g, '_');
  return /^[0-9]/.test(id) || RESERVED.has(id) ? `_${id}` : id;
};
const resolve = (schema) => {
  let s = schema;
  for (let i = 0; s && s.$ref && i < 10; i++) {
    s = spec.components?.schemas?.[s.$ref.replace('#/components/schemas/', '')];
  }
  return s || {};
};

const classes = Object.fromEntries(Object.values(CLASSES).map((c) => [c, []]));
const enums = new Map();
const addEnum = (name, values) => {
  if (!enums.has(name)) enums.set(name, Object.fromEntries(values.map((v) => [enumKey(v), String(v)])));
};

for (const [path, item] of Object.entries(spec.paths || {})) {
  for (const method of METHODS) {
    const op = item[method];
    if (!op || !op.operationId) continue;
    const cls = CLASSES[(op.tags || [])[0]] || 'SystemApi';
    const name = camel(op.operationId);

    const params = [];
    const own = new Set((op.parameters || []).map((p) => `${p.in}:${p.name}`));
    const pathLevel = (item.parameters || []).filter((p) => !own.has(`${p.in}:${p.name}`));
    for (const p of [...pathLevel, ...(op.parameters || [])]) {
      if (p.in !== 'path' && p.in !== 'query' && p.in !== 'header') continue;
      const schema = resolve(p.schema);
      if (Array.isArray(schema.enum)) addEnum(`${pascal(op.operationId)}${pascal(p.name)}Enum`, schema.enum);
      params.push({ name: p.name, key: ident(p.name), in: p.in, required: p.in === 'path' || !!p.required });
    }
    const jsonBody = op.requestBody?.content?.['application/json'];
    if (jsonBody) {
      const ref = jsonBody.schema?.$ref;
      const bodyName = ref ? ref.replace('#/components/schemas/', '') : `${pascal(op.operationId)}Request`;
      for (const [prop, ps] of Object.entries(resolve(jsonBody.schema).properties || {})) {
        const r = resolve(ps);
        if (Array.isArray(r.enum)) addEnum(`${bodyName}${pascal(prop)}Enum`, r.enum);
      }
      params.push({ name: bodyName, key: ident(bodyName), in: 'body', required: !!op.requestBody.required });
    }
    // required first, the order otherwise kept (Array.prototype.sort is stable)
    params.sort((a, b) => Number(b.required) - Number(a.required));

    let unwrapData = false;
    let dateFields = [];
    for (const [code, resp] of Object.entries(op.responses || {})) {
      const schema = /^2/.test(code) && resp.content?.['application/json']?.schema;
      if (!schema) continue;
      unwrapData = true;
      dateFields = Object.entries(resolve(schema).properties || {})
        .filter(([, ps]) => resolve(ps).format === 'date-time')
        .map(([k]) => k);
      break;
    }
    classes[cls].push({ name, method: method.toUpperCase(), path, params, unwrapData, dateFields });
  }
}

const out = [];
out.push('// Generated by bootstrap/vault-ui/packages/vault-client-typescript/gen.mjs from the OpenAPI document of the');
out.push('// pinned Vault. Do not edit.');
out.push("import { BaseAPI } from './runtime.js';");
out.push("export { BaseAPI, Configuration, ResponseError, FetchError, RequiredError, ApiResponse, encodeQuery } from './runtime.js';");
out.push('');
// Enums the Vault UI names for Enterprise-only operations, which an OSS Vault's document lacks (their calls answer 404).
for (const name of [
  'SystemListStorageRaftSnapshotAutoConfigListEnum',
  'SystemListStorageRaftSnapshotLoadListEnum',
  'SystemListSyncAssociationsListEnum',
  'SystemListSyncDestinationsListEnum',
  'UiConfigListCustomMessagesListEnum',
]) {
  addEnum(name, ['true']);
}
addEnum('SamlWriteSsoServiceUrlRequestClientTypeEnum', ['browser', 'cli']);
for (const [name, values] of [...enums].sort(([a], [b]) => a.localeCompare(b))) {
  out.push(`export const ${name} = Object.freeze(${JSON.stringify(values)});`);
}
for (const [cls, ops] of Object.entries(classes)) {
  out.push('');
  out.push(`export class ${cls} extends BaseAPI {`);
  for (const op of ops.sort((a, b) => a.name.localeCompare(b.name))) {
    const args = op.params.map((p) => p.key);
    const pick = (where) => op.params.filter((p) => p.in === where).map((p) => `${JSON.stringify(p.name)}: r.${p.key}`);
    const pathParams = op.params.filter((p) => p.in === 'path').map((p) => `[${JSON.stringify(p.name)}, r.${p.key}]`);
    const query = pick('query');
    const headers = pick('header');
    const body = op.params.find((p) => p.in === 'body');
    const desc = {
      name: op.name,
      method: op.method,
      path: op.path,
      unwrapData: op.unwrapData,
      dateFields: op.dateFields,
      hasBody: !!body,
    };
    const descJS = JSON.stringify(desc).slice(0, -1);
    out.push(`  ${op.name}Raw(r = {}, initOverrides) {`);
    out.push(
      `    return this.call(${descJS},"pathParams":[${pathParams.join(',')}],"query":{${query.join(',')}}` +
        `,"headers":{${headers.join(',')}}${body ? `,"body":r.${body.key}` : ''}}, initOverrides);`
    );
    out.push('  }');
    const obj = args.join(', ');
    out.push(`  async ${op.name}(${[...args, 'initOverrides'].join(', ')}) {`);
    out.push(`    return (await this.${op.name}Raw({ ${obj} }, initOverrides)).value();`);
    out.push('  }');
  }
  out.push('}');
}
process.stdout.write(out.join('\n') + '\n');
