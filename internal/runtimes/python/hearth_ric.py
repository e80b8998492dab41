"""Hearth's runtime interface client for python3.11.

It runs a Lambda handler ("module.function", "pkg/mod.function") against the
Runtime API at $AWS_LAMBDA_RUNTIME_API, as AWS's awslambdaric does: the same
module search path, context object, error shapes and error types, so that a
function written for Lambda's python3.11 runs unchanged. Standard library
only: the root has nothing else.
"""

import decimal
import http.client
import importlib
import json
import logging
import os
import site
import sys
import time
import traceback

API_PREFIX = "/2018-06-01/runtime"
ERROR_TYPE_HEADER = "Lambda-Runtime-Function-Error-Type"
THIS_FILE = os.path.abspath(__file__)

# The request id of the invocation in progress, for log lines.
_request_id = ""


class Fault(Exception):
    """An error of the runtime's own, with one of Lambda's Runtime.* types."""

    def __init__(self, error_type, message, trace=None):
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.trace = trace or []


class RuntimeAPI:
    """A client of the Runtime API over one kept-alive HTTP connection."""

    def __init__(self, addr):
        host, _, port = addr.rpartition(":")
        self.host = host.strip("[]")
        self.port = int(port)
        self.conn = None

    def _request(self, method, path, body=None, headers=None):
        # A kept-alive connection the server closed while idle fails at once,
        # before anything was taken: open a new one and send again, once.
        for attempt in (1, 2):
            if self.conn is None:
                # No timeout: /next blocks while the environment waits for
                # work, frozen or suspended for as long as that takes.
                self.conn = http.client.HTTPConnection(self.host, self.port)
            try:
                self.conn.request(method, API_PREFIX + path, body=body, headers=headers or {})
                resp = self.conn.getresponse()
                return resp, resp.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.conn.close()
                self.conn = None
                if attempt == 2:
                    raise

    def next(self):
        resp, body = self._request("GET", "/invocation/next")
        if resp.status != 200:
            raise RuntimeError("Runtime API /invocation/next: %d %s" % (resp.status, body[:200]))
        return resp.headers, body

    def _post(self, path, body, headers):
        headers = dict(headers)
        headers.setdefault("Content-Type", "application/json")
        resp, answer = self._request("POST", path, body=body, headers=headers)
        if resp.status >= 300:
            # The host refused what the function produced (say, too large):
            # it has answered the caller already; say so in the logs.
            print("[ERROR] Runtime API %s: %d %s" % (path, resp.status, answer[:200].decode("utf-8", "replace")),
                  flush=True)

    def respond(self, request_id, body):
        self._post("/invocation/%s/response" % request_id, body, {})

    def fail(self, request_id, error):
        self._post("/invocation/%s/error" % request_id, to_json(error), {ERROR_TYPE_HEADER: error["errorType"]})

    def init_fail(self, error):
        self._post("/init/error", to_json(error), {ERROR_TYPE_HEADER: error["errorType"]})


# --- the module search path ----------------------------------------------


def opt_dir():
    # HEARTH_OPT_DIR lets tests put the layers elsewhere than /opt; the guest
    # never sets it.
    return os.environ.get("HEARTH_OPT_DIR", "/opt")


def set_module_path(task_root):
    """Lambda's precedence: the task root, then the layers'
    python/lib/pythonN.N/site-packages, then python/ (when the function did not
    set PYTHONPATH itself); each a site directory so that .pth files work."""
    python_path_set = "PYTHONPATH" in os.environ
    opt_python = os.path.join(opt_dir(), "python")
    opt_site = os.path.join(opt_python, "lib", "python%d.%d" % sys.version_info[:2], "site-packages")
    if not python_path_set:
        sys.path.insert(0, opt_python)
        sys.path.insert(0, opt_site)
    sys.path.insert(0, task_root)
    site.addsitedir(task_root)
    if not python_path_set:
        site.addsitedir(opt_site)
        site.addsitedir(opt_python)
        # What Lambda documents for PYTHONPATH, so that a python3 the
        # function starts finds the runtime's modules too.
        os.environ["PYTHONPATH"] = os.environ.get("LAMBDA_RUNTIME_DIR", os.path.dirname(THIS_FILE))


# --- loading the handler ---------------------------------------------------


def load_handler(spec):
    """Returns the function _HANDLER names, or raises a Fault with the
    Runtime.* type awslambdaric gives the same mistake."""
    try:
        modname, fname = spec.rsplit(".", 1)
    except ValueError as e:
        raise Fault("Runtime.MalformedHandlerName", "Bad handler '%s': %s" % (spec, e))
    modname = modname.replace("/", ".")
    if modname.split(".")[0] in sys.builtin_module_names:
        raise Fault("Runtime.BuiltInModuleConflict", "Cannot use built-in module %s as a handler module" % modname)
    try:
        module = importlib.import_module(modname)
    except ImportError as e:
        raise Fault("Runtime.ImportModuleError", "Unable to import module '%s': %s" % (modname, e))
    except SyntaxError as e:
        trace = ['  File "%s" Line %s\n    %s' % (e.filename, e.lineno, e.text)]
        raise Fault("Runtime.UserCodeSyntaxError", "Syntax error in module '%s': %s" % (modname, e), trace)
    try:
        return getattr(module, fname)
    except AttributeError:
        raise Fault("Runtime.HandlerNotFound", "Handler '%s' missing on module '%s'" % (fname, modname))


# --- the context object ----------------------------------------------------


class CognitoIdentity:
    __slots__ = ["cognito_identity_id", "cognito_identity_pool_id"]


class Client:
    __slots__ = ["installation_id", "app_title", "app_version_name", "app_version_code", "app_package_name"]


class ClientContext:
    __slots__ = ["custom", "env", "client"]


def from_dict(cls, d):
    obj = cls()
    for field in cls.__slots__:
        setattr(obj, field, d.get(field))
    return obj


class LambdaContext:
    """What the handler gets as its second argument; the names and types are
    awslambdaric's (memory_limit_in_mb is a string there too)."""

    def __init__(self, request_id, deadline_ms, function_arn, client_context, identity):
        self.aws_request_id = request_id
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME")
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME")
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION")
        self.invoked_function_arn = function_arn
        self.client_context = None
        if client_context is not None:
            self.client_context = from_dict(ClientContext, client_context)
            if isinstance(self.client_context.client, dict):
                self.client_context.client = from_dict(Client, self.client_context.client)
        identity = identity or {}
        self.identity = CognitoIdentity()
        self.identity.cognito_identity_id = identity.get("cognitoIdentityId")
        self.identity.cognito_identity_pool_id = identity.get("cognitoIdentityPoolId")
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self):
        left = self._deadline_ms - int(time.time() * 1000)
        return left if left > 0 else 0

    def log(self, msg):
        sys.stdout.write(str(msg))

    def __repr__(self):
        return "LambdaContext([aws_request_id=%s,function_name=%s,function_version=%s,invoked_function_arn=%s])" % (
            self.aws_request_id, self.function_name, self.function_version, self.invoked_function_arn)


def parse_json_header(value, name):
    if not value:
        return None
    try:
        return json.loads(value)
    except Exception as e:
        raise Fault("Runtime.LambdaContextUnmarshalError", "Unable to parse %s JSON: %s" % (name, e))


# --- errors and results ----------------------------------------------------


class Encoder(json.JSONEncoder):
    def default(self, o):
        # DynamoDB's numbers come as Decimal; Lambda returns them as numbers.
        if isinstance(o, decimal.Decimal):
            return int(o) if o == o.to_integral_value() else float(o)
        return super().default(o)


def to_json(obj):
    return json.dumps(obj, cls=Encoder).encode("utf-8")


def user_frames(tb):
    """The traceback without the runtime's own frames at its top."""
    frames = traceback.extract_tb(tb)
    while frames and os.path.abspath(frames[0].filename) == THIS_FILE:
        frames.pop(0)
    return frames


def error_object(exc):
    if isinstance(exc, Fault):
        return {"errorMessage": exc.message, "errorType": exc.error_type, "stackTrace": exc.trace}
    return {
        "errorMessage": str(exc),
        "errorType": type(exc).__name__,
        "stackTrace": traceback.format_list(user_frames(exc.__traceback__)),
    }


def log_error(error):
    # One record per error, its lines joined by \r as awslambdaric does, so
    # that a log reader splitting on \n keeps the traceback together.
    lines = ["[ERROR] %s: %s" % (error["errorType"], error["errorMessage"])]
    if error["stackTrace"]:
        lines.append("Traceback (most recent call last):")
        for element in error["stackTrace"]:
            lines.extend(element.splitlines())
    sys.stdout.write("\r".join(lines) + "\n")


# --- logging -------------------------------------------------------------


class RequestIdFilter(logging.Filter):
    def filter(self, record):
        record.aws_request_id = _request_id
        return True


def set_up_logging():
    logging.Formatter.converter = time.gmtime
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter(
        "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s", "%Y-%m-%dT%H:%M:%S"))
    handler.addFilter(RequestIdFilter())
    logging.getLogger().addHandler(handler)


class Unbuffered:
    """A stream that flushes every write: a function's print must reach the
    log before its invocation ends, whatever the buffering of a pipe."""

    def __init__(self, stream):
        self.stream = stream

    def __getattr__(self, attr):
        return getattr(self.stream, attr)

    def write(self, msg):
        n = self.stream.write(msg)
        self.stream.flush()
        return n

    def writelines(self, msgs):
        self.stream.writelines(msgs)
        self.stream.flush()


# --- the loop ------------------------------------------------------------


def invoke(api, handler, headers, body):
    global _request_id
    request_id = headers.get("Lambda-Runtime-Aws-Request-Id", "")
    _request_id = request_id
    trace_id = headers.get("Lambda-Runtime-Trace-Id")
    if trace_id:
        os.environ["_X_AMZN_TRACE_ID"] = trace_id
    else:
        os.environ.pop("_X_AMZN_TRACE_ID", None)
    try:
        context = LambdaContext(
            request_id,
            int(headers.get("Lambda-Runtime-Deadline-Ms") or 0),
            headers.get("Lambda-Runtime-Invoked-Function-Arn"),
            parse_json_header(headers.get("Lambda-Runtime-Client-Context"), "Client Context"),
            parse_json_header(headers.get("Lambda-Runtime-Cognito-Identity"), "Cognito Identity"),
        )
        event = json.loads(body) if body else None
        result = handler(event, context)
        try:
            out = to_json(result)
        except (TypeError, ValueError) as e:
            raise Fault("Runtime.MarshalError", "Unable to marshal response: %s" % e)
    except Exception as e:
        error = error_object(e)
        log_error(error)
        api.fail(request_id, error)
        return
    api.respond(request_id, out)


def main():
    sys.stdout = Unbuffered(sys.stdout)
    sys.stderr = Unbuffered(sys.stderr)
    api = RuntimeAPI(os.environ["AWS_LAMBDA_RUNTIME_API"])
    try:
        set_up_logging()
        set_module_path(os.environ.get("LAMBDA_TASK_ROOT", "/var/task"))
        handler = load_handler(os.environ.get("_HANDLER", ""))
    except Exception as e:
        # Lambda's init errors: the module would not import, the handler is
        # not there, or the module's own code raised while it loaded.
        error = error_object(e)
        log_error(error)
        api.init_fail(error)
        sys.exit(1)
    while True:
        headers, body = api.next()
        invoke(api, handler, headers, body)


if __name__ == "__main__":
    main()
