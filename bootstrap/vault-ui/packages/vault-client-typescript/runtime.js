// vault-plugin-rotation: the runtime of our stand-in for @hashicorp/vault-client-typescript (which is not on the npm
// registry). The Vault UI calls `new XxxApi(configuration).someOperation(pathParam, ..., body, initOverrides)`; each
// generated method (index.js, written by gen.mjs from Vault's own OpenAPI document) builds a request description and
// hands it to BaseAPI.call below, which applies the configuration's middleware, fetches, and answers the parsed body.

export class Configuration {
  constructor(params = {}) {
    this.params = params;
  }
  get basePath() {
    return this.params.basePath ?? '';
  }
  get fetchApi() {
    return this.params.fetchApi;
  }
  get middleware() {
    return this.params.middleware || [];
  }
  get headers() {
    return this.params.headers;
  }
  get credentials() {
    return this.params.credentials;
  }
  get queryParamsStringify() {
    return this.params.queryParamsStringify || encodeQuery;
  }
}

export class ResponseError extends Error {
  constructor(response, message) {
    super(message || `Vault answered ${response && response.status}`);
    this.name = 'ResponseError';
    this.response = response;
  }
}

export class FetchError extends Error {
  constructor(cause, message) {
    super(message || (cause && cause.message) || 'the request failed');
    this.name = 'FetchError';
    this.cause = cause;
  }
}

export class RequiredError extends Error {
  constructor(field, message) {
    super(message || `${field} is required`);
    this.name = 'RequiredError';
    this.field = field;
  }
}

// encodeQuery turns { list: true, keys: ['a', 'b'] } into "list=true&keys=a&keys=b".
export function encodeQuery(params, prefix = '') {
  const parts = [];
  for (const key of Object.keys(params)) {
    const value = params[key];
    const name = prefix ? `${prefix}[${key}]` : key;
    if (value === undefined) continue;
    if (Array.isArray(value) || value instanceof Set) {
      for (const v of value) parts.push(`${encodeURIComponent(name)}=${encodeURIComponent(String(v))}`);
    } else if (value instanceof Date) {
      parts.push(`${encodeURIComponent(name)}=${encodeURIComponent(value.toISOString())}`);
    } else if (value !== null && typeof value === 'object') {
      const nested = encodeQuery(value, name);
      if (nested) parts.push(nested);
    } else {
      parts.push(`${encodeURIComponent(name)}=${encodeURIComponent(String(value))}`);
    }
  }
  return parts.join('&');
}

const isJSONType = (type) => !!type && /^(application\/json|[^;/ \t]+\/[^;/ \t]+\+json)[ \t]*(;.*)?$/i.test(type);

// The body of a response as the UI expects it: `data` for operations whose OpenAPI response has a schema, the whole
// JSON document otherwise (an empty object when there is none), with the schema's date-time fields as Dates.
export class ApiResponse {
  constructor(raw, unwrapData, dateFields) {
    this.raw = raw;
    this.unwrapData = unwrapData;
    this.dateFields = dateFields || [];
  }
  async value() {
    if (!this.unwrapData) {
      try {
        return await this.raw.json();
      } catch {
        return {};
      }
    }
    const doc = await this.raw.json();
    const data = doc ? doc.data : undefined;
    if (data && typeof data === 'object') {
      for (const f of this.dateFields) {
        if (typeof data[f] === 'string' && data[f] !== '') data[f] = new Date(data[f]);
      }
    }
    return data;
  }
}

// What an operation the pinned Vault's OpenAPI document lacks (an Enterprise one: sync, custom messages, snapshot
// loading, ...) answers: the 404 an OSS Vault gives for its path.
function missingOperation(name) {
  return async () => {
    const body = JSON.stringify({ errors: [`${name}: not an operation of this Vault (Enterprise only)`] });
    const response = new Response(body, { status: 404, statusText: 'Not Found', headers: { 'Content-Type': 'application/json', 'Content-Length': String(body.length) } });
    throw new ResponseError(response, 'Response returned an error code');
  };
}

export class BaseAPI {
  constructor(configuration = new Configuration()) {
    this.configuration = configuration;
    this.middleware = configuration.middleware.slice();
    return new Proxy(this, {
      get(target, prop, receiver) {
        if (typeof prop === 'string' && !(prop in target) && /^[a-z][A-Za-z0-9]*$/.test(prop) && prop !== 'then') {
          return missingOperation(prop);
        }
        return Reflect.get(target, prop, receiver);
      },
    });
  }

  withMiddleware(...middlewares) {
    const next = new this.constructor(this.configuration);
    next.middleware = this.middleware.concat(...middlewares);
    return next;
  }
  withPreMiddleware(...pres) {
    return this.withMiddleware(...pres.map((pre) => ({ pre })));
  }
  withPostMiddleware(...posts) {
    return this.withMiddleware(...posts.map((post) => ({ post })));
  }

  // op: { name, method, path, pathParams: [[placeholder, value]], query: {...}, headers: {...}, body, hasBody,
  // unwrapData, dateFields }
  async call(op, initOverrides) {
    const response = await this.request(op, initOverrides);
    return new ApiResponse(response, op.unwrapData, op.dateFields);
  }

  async request(op, initOverrides) {
    let path = op.path;
    for (const [placeholder, value] of op.pathParams || []) {
      if (value === undefined || value === null) {
        throw new RequiredError(placeholder, `${op.name}: path parameter ${placeholder} is required`);
      }
      const segment = String(value);
      // "." and ".." survive encodeURIComponent and the URL parser would resolve them: a
      // parameter must never move the call to another path (found by review).
      if (segment === '.' || segment === '..' || /(^|\/)\.\.?(\/|$)/.test(segment)) {
        throw new RequiredError(placeholder, `${op.name}: path parameter ${placeholder} may not be "." or ".." or hold such a segment`);
      }
      path = path.replace(`{${placeholder}}`, encodeURIComponent(segment));
    }
    const query = {};
    for (const [k, v] of Object.entries(op.query || {})) if (v !== undefined && v !== null) query[k] = v;
    const context = { path, method: op.method, headers: {}, query, body: op.body };
    for (const [k, v] of Object.entries(op.headers || {})) if (v !== undefined && v !== null) context.headers[k] = String(v);
    if (op.hasBody) context.headers['Content-Type'] = 'application/json';

    const headers = { ...(this.configuration.headers || {}), ...context.headers };
    for (const k of Object.keys(headers)) if (headers[k] === undefined) delete headers[k];
    const init = { method: context.method, headers, body: context.body, credentials: this.configuration.credentials };
    let overrides = initOverrides;
    if (typeof initOverrides === 'function') overrides = await initOverrides({ init, context });
    const merged = { ...init, ...(overrides || {}) };

    // the query is read after the overrides ran: the UI's addQueryParams adds to context.query there.
    let url = this.configuration.basePath + context.path;
    if (context.query && Object.keys(context.query).length) url += '?' + this.configuration.queryParamsStringify(context.query);

    let body = merged.body;
    const passThrough =
      (typeof FormData !== 'undefined' && body instanceof FormData) ||
      (typeof URLSearchParams !== 'undefined' && body instanceof URLSearchParams) ||
      (typeof Blob !== 'undefined' && body instanceof Blob);
    if (!passThrough && body !== undefined && isJSONType(headers['Content-Type'])) body = JSON.stringify(body);

    const response = await this.fetchWithMiddleware(url, { ...merged, body });
    if (response && response.status >= 200 && response.status < 300) return response;
    throw new ResponseError(response, 'Response returned an error code');
  }

  async fetchWithMiddleware(url, init) {
    const again = (u, i) => this.fetchWithMiddleware(u, i);
    let params = { url, init };
    for (const m of this.middleware) {
      if (m.pre) params = (await m.pre({ fetch: again, ...params })) || params;
    }
    const doFetch = this.configuration.fetchApi || ((...args) => fetch(...args));
    let response;
    try {
      response = await doFetch(params.url, params.init);
    } catch (e) {
      for (const m of this.middleware) {
        if (m.onError) {
          response =
            (await m.onError({ fetch: again, url: params.url, init: params.init, error: e, response: response && response.clone() })) ||
            response;
        }
      }
      if (response === undefined) throw e instanceof Error ? new FetchError(e) : e;
    }
    for (const m of this.middleware) {
      if (m.post) {
        response = (await m.post({ fetch: again, url: params.url, init: params.init, response: response.clone() })) || response;
      }
    }
    return response;
  }
}
