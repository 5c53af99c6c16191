#!/usr/bin/env node
// Validates an OpenAPI document (JSON or YAML file) against the OpenAPI schema and its semantic rules with
// @apidevtools/swagger-parser; exits 0 when it is valid, 1 with the errors on stderr otherwise.
//
//   npm ci --prefix scripts/openapi && node scripts/openapi/validate.js SPEC.json
"use strict";

const SwaggerParser = require("@apidevtools/swagger-parser");

async function main(argv) {
  if (argv.length !== 1) {
    console.error("usage: node scripts/openapi/validate.js SPEC.json");
    return 2;
  }
  const file = argv[0];
  try {
    const api = await SwaggerParser.validate(file);
    const paths = Object.keys(api.paths || {}).length;
    console.log(`${file}: valid OpenAPI ${api.openapi || api.swagger} document (${paths} paths)`);
    return 0;
  } catch (err) {
    console.error(`${file}: invalid OpenAPI document`);
    console.error(err && err.message ? err.message : String(err));
    if (err && Array.isArray(err.details)) {
      for (const d of err.details) {
        console.error(JSON.stringify(d));
      }
    }
    return 1;
  }
}

main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
