package api

import (
	"strings"
	"testing"

	"github.com/hearthdev/hearth/internal/lambdaerr"
	"github.com/hearthdev/hearth/internal/store"
)

func TestCheckURLConfig(t *testing.T) {
	tests := []struct {
		name    string
		body    urlConfigBody
		create  bool
		wantMsg string // "" for valid
	}{
		{"minimal create", urlConfigBody{AuthType: "NONE"}, true, ""},
		{"create needs an auth type", urlConfigBody{}, true, "AuthType"},
		{"update may leave the auth type", urlConfigBody{}, false, ""},
		{"unknown auth type", urlConfigBody{AuthType: "COGNITO"}, false, "AuthType"},
		{"unknown invoke mode", urlConfigBody{AuthType: "NONE", InvokeMode: "PUSH"}, true, "InvokeMode"},
		{"named origins with credentials", urlConfigBody{AuthType: "NONE", Cors: &store.Cors{AllowOrigins: []string{"https://app.test"}, AllowCredentials: true}}, true, ""},
		{"* without credentials", urlConfigBody{AuthType: "NONE", Cors: &store.Cors{AllowOrigins: []string{"*"}}}, true, ""},
		{"* with credentials on create", urlConfigBody{AuthType: "NONE", Cors: &store.Cors{AllowOrigins: []string{"*"}, AllowCredentials: true}}, true, "AllowCredentials"},
		{"* with credentials on update", urlConfigBody{Cors: &store.Cors{AllowOrigins: []string{"*"}, AllowCredentials: true}}, false, "AllowCredentials"},
		{"* among named origins with credentials", urlConfigBody{Cors: &store.Cors{AllowOrigins: []string{"https://app.test", "*"}, AllowCredentials: true}}, false, "AllowCredentials"},
		{"a method Lambda does not take", urlConfigBody{Cors: &store.Cors{AllowMethods: []string{"TRACE"}}}, false, "AllowMethods"},
		{"max age over a day", urlConfigBody{Cors: &store.Cors{MaxAge: 86401}}, false, "MaxAge"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkURLConfig(tt.body, tt.create)
			if tt.wantMsg == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			le, ok := lambdaerr.As(err)
			if !ok || le.Type != "InvalidParameterValueException" || !strings.Contains(le.Message, tt.wantMsg) {
				t.Fatalf("got %v, want InvalidParameterValueException about %s", err, tt.wantMsg)
			}
		})
	}
}

// Create and Update both refuse "*" with credentials, through the API.
func TestURLConfigRefusesWildcardWithCredentials(t *testing.T) {
	a := newTestAPI(t)
	createFn(t, a, "web", nil)
	cors := map[string]any{"AllowOrigins": []string{"*"}, "AllowCredentials": true}
	for _, op := range []struct{ method, name string }{{"POST", "create"}, {"PUT", "update"}} {
		status, h, b := call(t, a, op.method, "/2021-10-31/functions/web/url", map[string]any{"AuthType": "NONE", "Cors": cors})
		if typ, _, msg := lambdaError(t, h, b); status != 400 || typ != "InvalidParameterValueException" {
			t.Errorf("%s: %d %s %q, want 400 InvalidParameterValueException", op.name, status, typ, msg)
		}
	}
}
