package api

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
	// Hearth's own, beside Lambda's.
	m.HandleFunc("GET /hearth/v1/functions/{name}/logs", a.logs)
	m.HandleFunc("PUT /hearth/v1/functions/{name}/idle-policy", a.putIdlePolicy)
}
