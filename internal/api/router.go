package api

import (
	"net/http"
	"strings"

	"github.com/hearthdev/hearth/internal/lambdaerr"
)

// routes lists every operation, with the paths aws-sdk-go-v2's Lambda
// client uses.
func (a *API) routes() {
	m := a.mux
	m.HandleFunc("POST /2015-03-31/functions", a.createFunction)
	// The SDK lists without a trailing slash, the aws CLI with one.
	m.HandleFunc("GET /2015-03-31/functions", a.listFunctions)
	m.HandleFunc("GET /2015-03-31/functions/{$}", a.listFunctions)
	m.HandleFunc("GET /2015-03-31/functions/{name}", a.getFunction)
	m.HandleFunc("DELETE /2015-03-31/functions/{name}", a.deleteFunction)
	m.HandleFunc("GET /2015-03-31/functions/{name}/configuration", a.getFunctionConfiguration)
	m.HandleFunc("PUT /2015-03-31/functions/{name}/configuration", a.updateFunctionConfiguration)
	m.HandleFunc("PUT /2015-03-31/functions/{name}/code", a.updateFunctionCode)
	m.HandleFunc("POST /2015-03-31/functions/{name}/invocations", a.invoke)
	m.HandleFunc("PUT /2017-10-31/functions/{name}/concurrency", a.putConcurrency)
	m.HandleFunc("DELETE /2017-10-31/functions/{name}/concurrency", a.deleteConcurrency)
	m.HandleFunc("GET /2019-09-30/functions/{name}/concurrency", a.getConcurrency)
	m.HandleFunc("POST /2015-03-31/functions/{name}/versions", a.publishVersion)
	m.HandleFunc("GET /2015-03-31/functions/{name}/versions", a.listVersions)
	m.HandleFunc("POST /2015-03-31/functions/{name}/aliases", a.createAlias)
	m.HandleFunc("GET /2015-03-31/functions/{name}/aliases", a.listAliases)
	m.HandleFunc("GET /2015-03-31/functions/{name}/aliases/{alias}", a.getAlias)
	m.HandleFunc("PUT /2015-03-31/functions/{name}/aliases/{alias}", a.updateAlias)
	m.HandleFunc("DELETE /2015-03-31/functions/{name}/aliases/{alias}", a.deleteAlias)
	m.HandleFunc("POST /2021-10-31/functions/{name}/url", a.createURLConfig)
	m.HandleFunc("GET /2021-10-31/functions/{name}/url", a.getURLConfig)
	m.HandleFunc("PUT /2021-10-31/functions/{name}/url", a.updateURLConfig)
	m.HandleFunc("DELETE /2021-10-31/functions/{name}/url", a.deleteURLConfig)
	m.HandleFunc("GET /2021-10-31/functions/{name}/urls", a.listURLConfigs)
	m.HandleFunc("POST /2017-03-31/tags/{resource}", a.tagResource)
	m.HandleFunc("DELETE /2017-03-31/tags/{resource}", a.untagResource)
	m.HandleFunc("GET /2017-03-31/tags/{resource}", a.listTags)
	m.HandleFunc("POST /2015-03-31/functions/{name}/policy", a.addPermission)
	m.HandleFunc("GET /2015-03-31/functions/{name}/policy", a.getPolicy)
	m.HandleFunc("DELETE /2015-03-31/functions/{name}/policy/{sid}", a.removePermission)
	// GET /2018-10-31/layers is ListLayers, or GetLayerVersionByArn with
	// ?find=LayerVersion.
	m.HandleFunc("GET /2018-10-31/layers", a.layers)
	m.HandleFunc("GET /2018-10-31/layers/{$}", a.layers)
	m.HandleFunc("POST /2018-10-31/layers/{layer}/versions", a.publishLayerVersion)
	m.HandleFunc("GET /2018-10-31/layers/{layer}/versions", a.listLayerVersions)
	m.HandleFunc("GET /2018-10-31/layers/{layer}/versions/{version}", a.getLayerVersion)
	m.HandleFunc("DELETE /2018-10-31/layers/{layer}/versions/{version}", a.deleteLayerVersion)
	m.HandleFunc("POST /2018-10-31/layers/{layer}/versions/{version}/policy", a.addLayerVersionPermission)
	m.HandleFunc("GET /2018-10-31/layers/{layer}/versions/{version}/policy", a.getLayerVersionPolicy)
	m.HandleFunc("DELETE /2018-10-31/layers/{layer}/versions/{version}/policy/{sid}", a.removeLayerVersionPermission)
	m.HandleFunc("GET /2016-08-19/account-settings", a.getAccountSettings)
	m.HandleFunc("GET /2016-08-19/account-settings/{$}", a.getAccountSettings)
	m.HandleFunc("GET /2020-06-30/functions/{name}/code-signing-config", a.getCodeSigningConfig)
	// Asynchronous invocation settings, in eventinvoke.go.
	m.HandleFunc("PUT /2019-09-25/functions/{name}/event-invoke-config", a.putEventInvokeConfig)
	m.HandleFunc("POST /2019-09-25/functions/{name}/event-invoke-config", a.updateEventInvokeConfig)
	m.HandleFunc("GET /2019-09-25/functions/{name}/event-invoke-config", a.getEventInvokeConfig)
	m.HandleFunc("DELETE /2019-09-25/functions/{name}/event-invoke-config", a.deleteEventInvokeConfig)
	m.HandleFunc("GET /2019-09-25/functions/{name}/event-invoke-config/list", a.listEventInvokeConfigs)
	// Event source mappings, in esm.go; the aws CLI sends a trailing slash.
	m.HandleFunc("POST /2015-03-31/event-source-mappings", a.createEventSourceMapping)
	m.HandleFunc("POST /2015-03-31/event-source-mappings/{$}", a.createEventSourceMapping)
	m.HandleFunc("GET /2015-03-31/event-source-mappings", a.listEventSourceMappings)
	m.HandleFunc("GET /2015-03-31/event-source-mappings/{$}", a.listEventSourceMappings)
	m.HandleFunc("GET /2015-03-31/event-source-mappings/{uuid}", a.getEventSourceMapping)
	m.HandleFunc("PUT /2015-03-31/event-source-mappings/{uuid}", a.updateEventSourceMapping)
	m.HandleFunc("DELETE /2015-03-31/event-source-mappings/{uuid}", a.deleteEventSourceMapping)
	// Hearth's own, beside Lambda's.
	m.HandleFunc("GET /hearth/v1/functions/{name}/logs", a.logs)
	m.HandleFunc("PUT /hearth/v1/functions/{name}/idle-policy", a.putIdlePolicy)
	m.HandleFunc("GET /hearth/v1/functions/{name}/idle-policy", a.getIdlePolicy)
	m.HandleFunc("PUT /hearth/v1/functions/{name}/network-policy", a.putNetworkPolicy)
	m.HandleFunc("GET /hearth/v1/functions/{name}/network-policy", a.getNetworkPolicy)
	m.HandleFunc("GET /hearth/v1/cost", a.cost)
	m.HandleFunc("GET /hearth/v1/status", a.status)
	m.HandleFunc("GET /hearth/v1/usage/series", a.series)
	m.HandleFunc("GET /hearth/v1/buckets", a.buckets)
	// Several hosts, in cluster.go.
	m.HandleFunc("GET /hearth/v1/cluster", a.clusterStatus)
	m.HandleFunc("POST /hearth/v1/cluster/hosts/{node}/drain", a.drainHost)
	// Lambda MicroVMs (2025-09-09), in microvms*.go.
	m.HandleFunc("POST /2025-09-09/microvms", a.mvm(a.runMicrovm))
	m.HandleFunc("GET /2025-09-09/microvms", a.mvm(a.listMicrovms))
	m.HandleFunc("GET /2025-09-09/microvms/{id}", a.mvm(a.getMicrovm))
	m.HandleFunc("DELETE /2025-09-09/microvms/{id}", a.mvm(a.terminateMicrovm))
	m.HandleFunc("POST /2025-09-09/microvms/{id}/suspend", a.mvm(a.suspendMicrovm))
	m.HandleFunc("POST /2025-09-09/microvms/{id}/resume", a.mvm(a.resumeMicrovm))
	m.HandleFunc("POST /2025-09-09/microvms/{id}/auth-token", a.mvm(a.createMicrovmAuthToken))
	m.HandleFunc("POST /2025-09-09/microvm-images", a.mvm(a.createMicrovmImage))
	m.HandleFunc("GET /2025-09-09/microvm-images", a.mvm(a.listMicrovmImages))
	m.HandleFunc("GET /2025-09-09/microvm-images/{image}", a.mvm(a.getMicrovmImage))
	m.HandleFunc("PUT /2025-09-09/microvm-images/{image}", a.mvm(a.updateMicrovmImage))
	m.HandleFunc("DELETE /2025-09-09/microvm-images/{image}", a.mvm(a.deleteMicrovmImage))
	m.HandleFunc("GET /2025-09-09/microvm-images/{image}/versions", a.mvm(a.listMicrovmImageVersions))
	m.HandleFunc("GET /2025-09-09/microvm-images/{image}/versions/{version}", a.mvm(a.getMicrovmImageVersion))
	m.HandleFunc("DELETE /2025-09-09/microvm-images/{image}/versions/{version}", a.mvm(a.deleteMicrovmImageVersion))
	// Hearth's sandbox interface to a MicroVM, in microvms_exec.go and
	// microvms_files.go.
	m.HandleFunc("GET /hearth/v1/microvms/{id}/exec", a.execMicrovm)
	m.HandleFunc("GET /hearth/v1/microvms/{id}/files", a.files(downloadFile))
	m.HandleFunc("PUT /hearth/v1/microvms/{id}/files", a.files(uploadFile))
	m.HandleFunc("DELETE /hearth/v1/microvms/{id}/files", a.files(removeFile))
	m.HandleFunc("GET /hearth/v1/microvms/{id}/files/stat", a.files(statFile))
	m.HandleFunc("GET /hearth/v1/microvms/{id}/files/list", a.files(listDir))
	m.HandleFunc("POST /hearth/v1/microvms/{id}/files/mkdir", a.files(makeDir))
}

// methods a route may take, to tell a wrong method from an unknown path.
var methods = []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch}

// route serves r with its handler, or answers that Hearth does not serve it.
func (a *API) route(w http.ResponseWriter, r *http.Request) {
	if _, pattern := a.mux.Handler(r); pattern != "" {
		a.mux.ServeHTTP(w, r)
		return
	}
	allow := a.allowed(r)
	if len(allow) > 0 {
		w.Header().Set("Allow", strings.Join(allow, ", "))
	}
	a.writeError(w, unknownOperation(r, allow))
}

// allowed lists the methods the mux serves at r's path.
func (a *API) allowed(r *http.Request) []string {
	var out []string
	for _, m := range methods {
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := a.mux.Handler(probe); pattern != "" {
			out = append(out, m)
		}
	}
	return out
}

// unknownOperation is the error for a request no route serves: 405 when
// the path takes other methods, else 404; it names the Lambda operation
// when the request is one of Lambda's.
func unknownOperation(r *http.Request, allow []string) error {
	status := http.StatusNotFound
	if len(allow) > 0 {
		status = http.StatusMethodNotAllowed
	}
	req := r.Method + " " + r.URL.Path
	if op := operationFor(r.Method, r.URL.Path, r.URL.Query()); op != "" {
		return lambdaerr.UnknownOperation(status, "The Lambda operation %s (%s) is not supported by Hearth", op, req)
	}
	if len(allow) > 0 {
		return lambdaerr.UnknownOperation(status, "%s is not supported by Hearth: %s takes %s", req, r.URL.Path, strings.Join(allow, ", "))
	}
	return lambdaerr.UnknownOperation(status, "%s is not supported by Hearth: no Lambda operation has this path", req)
}
