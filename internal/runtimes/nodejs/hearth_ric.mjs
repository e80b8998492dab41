// Hearth's runtime interface client for nodejs18.x.
//
// It runs a Lambda handler ("file.export", "dir/file.export.nested") against
// the Runtime API at $AWS_LAMBDA_RUNTIME_API as AWS's Node.js runtime
// interface client does: CommonJS and ES modules (.js, .mjs, .cjs), async and
// callback handlers with callbackWaitsForEmptyEventLoop, the same context
// object, error shapes and Runtime.* error types, and log lines. Node's
// standard library only: the root has nothing else.

import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import util from 'node:util';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';

const API_PREFIX = '/2018-06-01/runtime';
const ERROR_TYPE_HEADER = 'Lambda-Runtime-Function-Error-Type';
const require = createRequire(import.meta.url);

// --- errors -----------------------------------------------------------------

// The runtime's own errors carry Lambda's Runtime.* names as their type.
function runtimeError(name) {
  const cls = class extends Error {};
  cls.prototype.name = `Runtime.${name}`;
  return cls;
}
const ImportModuleError = runtimeError('ImportModuleError');
const HandlerNotFound = runtimeError('HandlerNotFound');
const MalformedHandlerName = runtimeError('MalformedHandlerName');
const UserCodeSyntaxError = runtimeError('UserCodeSyntaxError');
const UnhandledPromiseRejection = runtimeError('UnhandledPromiseRejection');

function isError(e) {
  return (
    util.types.isNativeError(e) ||
    (e && typeof e.name === 'string' && typeof e.message === 'string' && typeof e.stack === 'string')
  );
}

// errorObject is the body of an error post. Lambda's Node.js runtimes name
// the stack "trace" (where Python's name it "stackTrace"): what a caller of
// a Node.js function gets back, so the same here.
function errorObject(e) {
  try {
    if (isError(e)) {
      return { errorType: e.name, errorMessage: e.message, trace: e.stack.split('\n') };
    }
    return { errorType: typeof e, errorMessage: String(e), trace: [] };
  } catch {
    return {
      errorType: 'handled',
      errorMessage:
        'callback called with Error argument, but there was a problem while retrieving one or more of its message, name, and stack',
      trace: [],
    };
  }
}

// --- the Runtime API --------------------------------------------------------

class RuntimeAPI {
  constructor(addr) {
    const i = addr.lastIndexOf(':');
    this.host = addr.slice(0, i).replace(/^\[|\]$/g, '');
    this.port = Number(addr.slice(i + 1));
    // One kept-alive connection. The agent unrefs a free socket, so an idle
    // connection does not keep the event loop alive: callbackWaitsForEmpty-
    // EventLoop sees only the function's own work.
    this.agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  }

  request(method, p, body, headers) {
    return new Promise((resolve, reject) => {
      const req = http.request(
        { host: this.host, port: this.port, method, path: API_PREFIX + p, agent: this.agent, headers },
        (res) => {
          const chunks = [];
          res.on('data', (c) => chunks.push(c));
          res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  }

  async next() {
    const res = await this.request('GET', '/invocation/next');
    if (res.status !== 200) {
      throw new Error(`Runtime API /invocation/next: ${res.status} ${res.body.toString().slice(0, 200)}`);
    }
    return res;
  }

  async post(p, body, headers = {}) {
    const buf = Buffer.from(body);
    const res = await this.request('POST', p, buf, {
      'Content-Type': 'application/json',
      'Content-Length': buf.length,
      ...headers,
    });
    if (res.status >= 300) {
      // The host refused what the function produced (say, too large): it
      // has answered the caller already; say so in the logs.
      process.stdout.write(`Runtime API ${p}: ${res.status} ${res.body.toString().slice(0, 200)}\n`);
    }
  }

  respond(id, body) {
    return this.post(`/invocation/${encodeURIComponent(id)}/response`, body);
  }

  fail(id, err) {
    const obj = errorObject(err);
    return this.post(`/invocation/${encodeURIComponent(id)}/error`, JSON.stringify(obj), {
      [ERROR_TYPE_HEADER]: obj.errorType,
    });
  }

  initFail(err) {
    const obj = errorObject(err);
    return this.post('/init/error', JSON.stringify(obj), { [ERROR_TYPE_HEADER]: obj.errorType });
  }
}

// --- logs -------------------------------------------------------------------

let currentRequestId = '';

// Lambda's console: every line "time\trequest id\tLEVEL\tmessage", newlines
// inside a message turned into \r so that one call stays one log record.
function patchConsole() {
  const levels = { log: 'INFO', info: 'INFO', warn: 'WARN', error: 'ERROR', debug: 'DEBUG', trace: 'TRACE' };
  for (const [method, level] of Object.entries(levels)) {
    console[method] = (...args) => {
      const msg = util.format(...args).replace(/\n/g, '\r');
      process.stdout.write(`${new Date().toISOString()}\t${currentRequestId}\t${level}\t${msg}\n`);
    };
  }
  console.fatal = console.error;
}

// --- loading the handler ----------------------------------------------------

function exists(p) {
  try {
    return fs.statSync(p).isFile();
  } catch {
    return false;
  }
}

// Whether a .js file is an ES module: the nearest package.json says
// "type": "module" (a node_modules folder ends the search).
function packageTypeModule(dir) {
  for (;;) {
    if (dir.endsWith('/node_modules')) {
      return false;
    }
    const pj = path.join(dir, 'package.json');
    if (fs.existsSync(pj)) {
      try {
        return JSON.parse(fs.readFileSync(pj, 'utf8')).type === 'module';
      } catch {
        return false;
      }
    }
    const parent = path.dirname(dir);
    if (parent === dir) {
      return false;
    }
    dir = parent;
  }
}

// loadModule loads the handler's file the way Lambda's runtime tries it:
// the bare name, .js (CommonJS unless its package says module), .mjs,
// .cjs, then Node's own resolution from the task root.
async function loadModule(taskRoot, moduleRoot, name) {
  const base = path.resolve(taskRoot, moduleRoot, name);
  if (exists(base)) {
    return require(base);
  }
  const esm = exists(base + '.js') && packageTypeModule(path.dirname(base));
  if (exists(base + '.js') && !esm) {
    return require(base + '.js');
  }
  if (esm) {
    return import(pathToFileURL(base + '.js').href);
  }
  if (exists(base + '.mjs')) {
    return import(pathToFileURL(base + '.mjs').href);
  }
  if (exists(base + '.cjs')) {
    return require(base + '.cjs');
  }
  return require(require.resolve(name, { paths: [taskRoot, path.resolve(taskRoot, moduleRoot)] }));
}

async function loadHandler(taskRoot, spec) {
  if (spec.includes('..')) {
    throw new MalformedHandlerName(
      `'${spec}' is not a valid handler name. Use absolute paths when specifying root directories in handler names.`,
    );
  }
  const file = path.basename(spec);
  const moduleRoot = spec.slice(0, spec.length - file.length);
  const m = file.match(/^([^.]*)\.(.*)$/);
  if (!m) {
    throw new MalformedHandlerName('Bad handler');
  }
  const [, name, exportPath] = m;
  let mod;
  try {
    mod = await loadModule(taskRoot, moduleRoot, name);
  } catch (e) {
    if (e instanceof SyntaxError) {
      throw new UserCodeSyntaxError(String(e));
    }
    if (e && (e.code === 'MODULE_NOT_FOUND' || e.code === 'ERR_MODULE_NOT_FOUND')) {
      throw new ImportModuleError(String(e));
    }
    throw e;
  }
  const fn = exportPath.split('.').reduce((o, k) => o && o[k], mod);
  if (!fn) {
    throw new HandlerNotFound(`${spec} is undefined or not exported`);
  }
  if (typeof fn !== 'function') {
    throw new HandlerNotFound(`${spec} is not a function`);
  }
  return fn;
}

// --- invocations ------------------------------------------------------------

// What runs when the event loop empties during an invocation: Lambda's way
// of waiting for a callback handler's pending work, and of answering for a
// handler that neither returned a promise nor called back.
let onEmptyLoop = () => {};
process.on('beforeExit', () => onEmptyLoop());

// What an uncaught error or an unhandled rejection does; set per phase.
let onFatal = (err, code) => {
  process.stderr.write(`${util.format(err)}\n`);
  process.exit(code);
};
process.on('uncaughtException', (err) => onFatal(err, 129));
process.on('unhandledRejection', (reason) => {
  const err = new UnhandledPromiseRejection(reason instanceof Error ? reason.message : String(reason));
  if (reason instanceof Error) {
    err.stack = reason.stack;
  }
  onFatal(err, 128);
});

function parseHeader(value, name) {
  if (value === undefined) {
    return undefined;
  }
  try {
    return JSON.parse(value);
  } catch (e) {
    throw new Error(`Cannot parse ${name} as json: ${e}`);
  }
}

function serialize(result) {
  return JSON.stringify(result === undefined ? null : result);
}

class Runtime {
  constructor(api, handler) {
    this.api = api;
    this.handler = handler;
  }

  scheduleNext() {
    setImmediate(() =>
      this.handleOnce().catch((err) => {
        process.stderr.write(`Unexpected top level error: ${util.format(err)}\n`);
        process.exit(1);
      }),
    );
  }

  async handleOnce() {
    const { headers, body } = await this.api.next();
    const id = headers['lambda-runtime-aws-request-id'];
    currentRequestId = id;
    const trace = headers['lambda-runtime-trace-id'];
    if (trace) {
      process.env._X_AMZN_TRACE_ID = trace;
    } else {
      delete process.env._X_AMZN_TRACE_ID;
    }

    // Only the first of callback, succeed, fail, done or the returned
    // promise counts; each ends the invocation and starts the next.
    let finished = false;
    let waitForEmptyLoop = true;
    const post = (err, result) => {
      onEmptyLoop = () => {};
      let p;
      if (err !== undefined && err !== null) {
        console.error('Invoke Error', JSON.stringify(errorObject(err)));
        p = this.api.fail(id, err);
      } else {
        let out;
        try {
          out = serialize(result);
        } catch {
          p = this.api.fail(id, new Error('Unable to stringify response body'));
        }
        p = p || this.api.respond(id, out);
      }
      p.then(
        () => this.scheduleNext(),
        (e) => {
          // The Runtime API is gone: nothing can be reported any more.
          process.stderr.write(`Runtime API: ${util.format(e)}\n`);
          process.exit(1);
        },
      );
    };
    const once = (f) => (...args) => {
      if (!finished) {
        finished = true;
        f(...args);
      }
    };
    const done = once(post);
    const callback = once((err, result) => {
      if ((err !== undefined && err !== null) || !waitForEmptyLoop) {
        post(err, result);
        return;
      }
      onEmptyLoop = () => {
        onEmptyLoop = () => {};
        setImmediate(() => post(null, result));
      };
    });
    onEmptyLoop = () => done(null, null);
    onFatal = (err, code) => {
      onFatal = (e, c) => process.exit(c);
      this.api.fail(id, err).finally(() => process.exit(code));
    };

    const deadline = Number(headers['lambda-runtime-deadline-ms']);
    const env = process.env;
    let context;
    let event;
    try {
      context = {
        get callbackWaitsForEmptyEventLoop() {
          return waitForEmptyLoop;
        },
        set callbackWaitsForEmptyEventLoop(v) {
          waitForEmptyLoop = v;
        },
        succeed: (result) => done(null, result),
        fail: (err) => done(err === undefined || err === null ? 'handled' : err, null),
        done: (err, result) => done(err, result),
        functionVersion: env.AWS_LAMBDA_FUNCTION_VERSION,
        functionName: env.AWS_LAMBDA_FUNCTION_NAME,
        memoryLimitInMB: env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE,
        logGroupName: env.AWS_LAMBDA_LOG_GROUP_NAME,
        logStreamName: env.AWS_LAMBDA_LOG_STREAM_NAME,
        clientContext: parseHeader(headers['lambda-runtime-client-context'], 'ClientContext'),
        identity: parseHeader(headers['lambda-runtime-cognito-identity'], 'CognitoIdentity'),
        invokedFunctionArn: headers['lambda-runtime-invoked-function-arn'],
        awsRequestId: id,
        getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
      };
      event = JSON.parse(body.toString('utf8') || 'null');
    } catch (err) {
      done(err);
      return;
    }
    try {
      const result = this.handler(event, context, callback);
      if (result && typeof result.then === 'function') {
        result.then(
          (v) => done(null, v),
          (err) => done(err === undefined || err === null ? 'handled' : err, null),
        );
      }
    } catch (err) {
      done(err);
    }
  }
}

async function main() {
  patchConsole();
  const api = new RuntimeAPI(process.env.AWS_LAMBDA_RUNTIME_API);
  // An error while the handler loads is an init error: Lambda reports it
  // through /init/error and the runtime exits.
  onFatal = (err, code) => {
    onFatal = (e, c) => process.exit(c);
    console.error('Init Error', JSON.stringify(errorObject(err)));
    api.initFail(err).finally(() => process.exit(code));
  };
  let handler;
  try {
    handler = await loadHandler(process.env.LAMBDA_TASK_ROOT || '/var/task', process.env._HANDLER || '');
  } catch (err) {
    onFatal(err, 129);
    return;
  }
  new Runtime(api, handler).scheduleNext();
}

main();
