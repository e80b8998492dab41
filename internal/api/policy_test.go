package api

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestPermissionStatement(t *testing.T) {
	const res = "arn:aws:lambda:local:000000000000:function:fn"
	yes := true
	tests := []struct {
		name    string
		req     addPermissionRequest
		want    string
		wantErr string
	}{
		{"a service with a source", addPermissionRequest{StatementID: "s3", Action: "lambda:InvokeFunction", Principal: "s3.amazonaws.com", SourceArn: "arn:aws:s3:::b", SourceAccount: "123456789012"},
			`{"Sid":"s3","Effect":"Allow","Principal":{"Service":"s3.amazonaws.com"},"Action":"lambda:InvokeFunction","Resource":"` + res + `","Condition":{"ArnLike":{"AWS:SourceArn":"arn:aws:s3:::b"},"StringEquals":{"AWS:SourceAccount":"123456789012"}}}`, ""},
		{"an account", addPermissionRequest{StatementID: "acct", Action: "lambda:GetFunction", Principal: "123456789012"},
			`{"Sid":"acct","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:root"},"Action":"lambda:GetFunction","Resource":"` + res + `"}`, ""},
		{"a role ARN", addPermissionRequest{StatementID: "role", Action: "lambda:*", Principal: "arn:aws:iam::123456789012:role/r"},
			`{"Sid":"role","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:role/r"},"Action":"lambda:*","Resource":"` + res + `"}`, ""},
		{"anyone through the URL", addPermissionRequest{StatementID: "FunctionURLAllowPublicAccess", Action: "lambda:InvokeFunctionUrl", Principal: "*", FunctionURLAuthType: "NONE", InvokedViaFunctionURL: &yes},
			`{"Sid":"FunctionURLAllowPublicAccess","Effect":"Allow","Principal":"*","Action":"lambda:InvokeFunctionUrl","Resource":"` + res + `","Condition":{"Bool":{"lambda:InvokedViaFunctionUrl":"true"},"StringEquals":{"lambda:FunctionUrlAuthType":"NONE"}}}`, ""},
		{"no statement id", addPermissionRequest{Action: "lambda:InvokeFunction", Principal: "*"}, "", "StatementId"},
		{"a bad statement id", addPermissionRequest{StatementID: "has space", Action: "lambda:InvokeFunction", Principal: "*"}, "", "StatementId"},
		{"a bad action", addPermissionRequest{StatementID: "x", Action: "s3:GetObject", Principal: "*"}, "", "Action"},
		{"no principal", addPermissionRequest{StatementID: "x", Action: "lambda:InvokeFunction"}, "", "Principal"},
		{"a bad URL auth type", addPermissionRequest{StatementID: "x", Action: "lambda:InvokeFunction", Principal: "*", FunctionURLAuthType: "OPEN"}, "", "FunctionUrlAuthType"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := tt.req.statement(res)
			wantInvalid(t, tt.name, err, tt.wantErr)
			if tt.wantErr != "" {
				return
			}
			b, _ := json.Marshal(st)
			if string(b) != tt.want {
				t.Errorf("statement\n%s\nwant\n%s", b, tt.want)
			}
		})
	}
}

func TestPermissionsThroughTheAPI(t *testing.T) {
	a := newTestAPI(t)
	createFn(t, a, "fn", nil)
	add := map[string]any{"StatementId": "s3", "Action": "lambda:InvokeFunction", "Principal": "s3.amazonaws.com"}
	if code, _, body := call(t, a, "POST", "/2015-03-31/functions/fn/policy", add); code != 201 || !strings.Contains(string(body), `"Statement":"{\"Sid\":\"s3\"`) {
		t.Fatalf("add: %d %s", code, body)
	}
	code, _, body := call(t, a, "GET", "/2015-03-31/functions/fn/policy", nil)
	var got struct{ Policy, RevisionId string }
	if err := json.Unmarshal(body, &got); err != nil || code != 200 || got.RevisionId == "" {
		t.Fatalf("get: %d %s", code, body)
	}
	var doc struct {
		Version   string
		Id        string
		Statement []map[string]any
	}
	if err := json.Unmarshal([]byte(got.Policy), &doc); err != nil || doc.Version != "2012-10-17" || doc.Id != "default" || len(doc.Statement) != 1 {
		t.Errorf("policy %s: %v", got.Policy, err)
	}
	tests := []struct {
		name   string
		method string
		path   string
		body   map[string]any
		status int
		typ    string
	}{
		{"the same sid", "POST", "/2015-03-31/functions/fn/policy", add, 409, "ResourceConflictException"},
		{"a missing function", "POST", "/2015-03-31/functions/nope/policy", add, 404, "ResourceNotFoundException"},
		{"a missing version", "POST", "/2015-03-31/functions/fn/policy?Qualifier=9", add, 404, "ResourceNotFoundException"},
		{"a stale revision", "DELETE", "/2015-03-31/functions/fn/policy/s3?RevisionId=old", nil, 412, "PreconditionFailedException"},
		{"a missing sid", "DELETE", "/2015-03-31/functions/fn/policy/nope", nil, 404, "ResourceNotFoundException"},
		{"no policy at an alias", "GET", "/2015-03-31/functions/fn/policy?Qualifier=live", nil, 404, "ResourceNotFoundException"},
	}
	for _, tt := range tests {
		code, h, body := call(t, a, tt.method, tt.path, tt.body)
		if typ, _, _ := lambdaError(t, h, body); code != tt.status || typ != tt.typ {
			t.Errorf("%s: %d %s, want %d %s", tt.name, code, body, tt.status, tt.typ)
		}
	}
	if code, _, body := call(t, a, "DELETE", "/2015-03-31/functions/fn/policy/s3?RevisionId="+got.RevisionId, nil); code != 204 {
		t.Fatalf("remove: %d %s", code, body)
	}
	code, h, body := call(t, a, "GET", "/2015-03-31/functions/fn/policy", nil)
	if typ, _, msg := lambdaError(t, h, body); code != 404 || typ != "ResourceNotFoundException" || msg != "The resource you requested does not exist." {
		t.Errorf("after the last statement went: %d %s", code, body)
	}
}

func TestAccountSettings(t *testing.T) {
	a := newTestAPI(t)
	createFn(t, a, "one", nil)
	createFn(t, a, "two", nil)
	if code, _, body := call(t, a, "PUT", "/2017-10-31/functions/one/concurrency", map[string]any{"ReservedConcurrentExecutions": 3}); code != 200 {
		t.Fatalf("concurrency: %d %s", code, body)
	}
	code, _, body := call(t, a, "GET", "/2016-08-19/account-settings/", nil)
	var got struct {
		AccountLimit accountLimit
		AccountUsage accountUsage
	}
	if err := json.Unmarshal(body, &got); err != nil || code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	l, u := got.AccountLimit, got.AccountUsage
	if l.ConcurrentExecutions != 8 || l.UnreservedConcurrentExecutions != 5 || l.CodeSizeZipped != 50<<20 || l.CodeSizeUnzipped != 262144000 {
		t.Errorf("limits %+v", l)
	}
	// Both functions share one stored zip, "zip": 3 bytes.
	if u.FunctionCount != 2 || u.TotalCodeSize != 3 || l.TotalCodeSize <= u.TotalCodeSize {
		t.Errorf("usage %+v, limit %+v", u, l)
	}
}
