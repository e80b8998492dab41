package store

import (
	"context"
	"errors"
	"testing"
)

func openStore(t *testing.T) *Store {
	t.Helper()
	s, err := Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// A row written before EphemeralStorage, LoggingConfig and SnapStart
// existed loads with Lambda's defaults.
func TestOldRowsLoadWithDefaults(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	old := `{"FunctionName":"old","FunctionArn":"arn:aws:lambda:local:000000000000:function:old","Runtime":"provided.al2023",` +
		`"Handler":"bootstrap","MemorySize":128,"Timeout":3,"Version":"$LATEST","RevisionId":"r1","State":"Active",` +
		`"Architectures":["x86_64"],"HearthIdlePolicy":{"KeepWarmSeconds":60,"KeepSuspendedHours":24}}`
	if _, err := s.db.ExecContext(ctx, `INSERT INTO functions (name, config) VALUES (?, ?)`, "old", old); err != nil {
		t.Fatal(err)
	}
	f, err := s.GetFunction(ctx, "old")
	if err != nil {
		t.Fatal(err)
	}
	if f.EphemeralStorage == nil || f.EphemeralStorage.Size != 512 {
		t.Errorf("EphemeralStorage %+v, want 512", f.EphemeralStorage)
	}
	if f.LoggingConfig == nil || *f.LoggingConfig != (LoggingConfig{LogFormat: "Text", LogGroup: "/aws/lambda/old"}) {
		t.Errorf("LoggingConfig %+v", f.LoggingConfig)
	}
	if f.SnapStart == nil || *f.SnapStart != (SnapStart{ApplyOn: "None", OptimizationStatus: "Off"}) {
		t.Errorf("SnapStart %+v", f.SnapStart)
	}
	if f.MemorySize != 128 || f.IdlePolicy.KeepWarmSeconds != 60 {
		t.Errorf("old fields lost: %+v", f)
	}
}

func TestPublishedVersionSnapStartStatus(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	f := newFn("snap")
	f.SnapStart = &SnapStart{ApplyOn: SnapStartPublished}
	if err := s.CreateFunction(ctx, f); err != nil {
		t.Fatal(err)
	}
	v, err := s.PublishVersion(ctx, "snap", "")
	if err != nil {
		t.Fatal(err)
	}
	latest, _ := s.GetFunction(ctx, "snap")
	if v.SnapStart.OptimizationStatus != "On" || latest.SnapStart.OptimizationStatus != "Off" {
		t.Errorf("version %+v, $LATEST %+v; want On and Off", v.SnapStart, latest.SnapStart)
	}
}

func TestTagsAndPoliciesGoWithTheFunction(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	if err := s.UpdateTags(ctx, "nope", func(map[string]string) error { return nil }); !errors.Is(err, ErrNotFound) {
		t.Errorf("tags of a missing function: %v", err)
	}
	if err := s.CreateFunction(ctx, newFn("fn")); err != nil {
		t.Fatal(err)
	}
	if err := s.UpdateTags(ctx, "fn", func(t map[string]string) error { t["team"], t["env"] = "a", "prod"; return nil }); err != nil {
		t.Fatal(err)
	}
	refuse := errors.New("refused")
	if err := s.UpdateTags(ctx, "fn", func(t map[string]string) error { delete(t, "team"); return refuse }); !errors.Is(err, refuse) {
		t.Fatal(err)
	}
	tags, err := s.Tags(ctx, "fn")
	if err != nil || len(tags) != 2 || tags["team"] != "a" {
		t.Errorf("tags %v %v, want both kept after a refused change", tags, err)
	}
	add := func(sid string) error {
		return s.UpdatePolicy(ctx, "fn", "", "rev-"+sid, func(p *Policy) error {
			p.Document.Statement = append(p.Document.Statement, PolicyStatement{Sid: sid, Effect: "Allow", Principal: "*", Action: "lambda:InvokeFunction"})
			return nil
		})
	}
	if err := add("a"); err != nil {
		t.Fatal(err)
	}
	if err := add("b"); err != nil {
		t.Fatal(err)
	}
	p, err := s.GetPolicy(ctx, "fn", "")
	if err != nil || len(p.Document.Statement) != 2 || p.RevisionID != "rev-b" || p.Document.Version != "2012-10-17" {
		t.Fatalf("policy %+v %v", p, err)
	}
	if _, err := s.GetPolicy(ctx, "fn", "1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("policy at another qualifier: %v", err)
	}
	// Removing every statement removes the policy.
	if err := s.UpdatePolicy(ctx, "fn", "", "rev-c", func(p *Policy) error { p.Document.Statement = nil; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetPolicy(ctx, "fn", ""); !errors.Is(err, ErrNotFound) {
		t.Errorf("empty policy: %v, want ErrNotFound", err)
	}
	if err := add("a"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteFunction(ctx, "fn"); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateFunction(ctx, newFn("fn")); err != nil {
		t.Fatal(err)
	}
	if tags, err := s.Tags(ctx, "fn"); err != nil || len(tags) != 0 {
		t.Errorf("a new function of the same name has tags %v %v", tags, err)
	}
	if _, err := s.GetPolicy(ctx, "fn", ""); !errors.Is(err, ErrNotFound) {
		t.Errorf("a new function of the same name has a policy: %v", err)
	}
}

func TestAccountFigures(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	for _, n := range []string{"a", "b"} {
		if err := s.CreateFunction(ctx, newFn(n)); err != nil {
			t.Fatal(err)
		}
	}
	two, five := 2, 5
	_ = s.SetConcurrency(ctx, "a", &two)
	_ = s.SetConcurrency(ctx, "b", &five)
	if n, err := s.FunctionCount(ctx); err != nil || n != 2 {
		t.Errorf("FunctionCount %d %v", n, err)
	}
	if n, err := s.ReservedConcurrency(ctx); err != nil || n != 7 {
		t.Errorf("ReservedConcurrency %d %v", n, err)
	}
	if _, _, err := s.PutCode([]byte("twelve bytes")); err != nil {
		t.Fatal(err)
	}
	used, free, err := s.CodeStorage()
	if err != nil || used != 12 || free <= 0 {
		t.Errorf("CodeStorage %d %d %v, want 12 used and some free", used, free, err)
	}
}
