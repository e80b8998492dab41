package store

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

func newFn(name string) Function {
	return Function{FunctionName: name, Runtime: "provided.al2023", Handler: "bootstrap", MemorySize: 128, Timeout: 3,
		Version: "$LATEST", RevisionID: "r1", State: "Active"}
}

func TestFunctionsSurviveReopen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		if err := s.CreateFunction(ctx, newFn(fmt.Sprintf("fn-%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.CreateFunction(ctx, newFn("fn-0")); !errors.Is(err, ErrExists) {
		t.Errorf("duplicate create: %v, want ErrExists", err)
	}
	if _, err := s.UpdateFunction(ctx, "fn-1", func(f *Function) error { f.MemorySize = 512; return nil }); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s, err = Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	f, err := s.GetFunction(ctx, "fn-1")
	if err != nil || f.MemorySize != 512 {
		t.Fatalf("after reopen: %+v %v", f, err)
	}
	var names []string
	marker := ""
	for pages := 0; pages < 10; pages++ {
		fs, next, err := s.ListFunctions(ctx, marker, 2)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fs {
			names = append(names, f.FunctionName)
		}
		if next == "" {
			break
		}
		marker = next
	}
	if fmt.Sprint(names) != "[fn-0 fn-1 fn-2 fn-3 fn-4]" {
		t.Errorf("paged list: %v", names)
	}
	if err := s.DeleteFunction(ctx, "fn-2"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetFunction(ctx, "fn-2"); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleted function: %v", err)
	}
	if err := s.DeleteFunction(ctx, "fn-2"); !errors.Is(err, ErrNotFound) {
		t.Errorf("delete twice: %v", err)
	}
}

func TestVersionsAliasesConcurrency(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.CreateFunction(ctx, newFn("f")); err != nil {
		t.Fatal(err)
	}
	v1, err := s.PublishVersion(ctx, "f", "")
	if err != nil || v1.Version != "1" {
		t.Fatalf("publish: %+v %v", v1, err)
	}
	again, _ := s.PublishVersion(ctx, "f", "")
	if again.Version != "1" {
		t.Errorf("publishing an unchanged function made version %s, want 1", again.Version)
	}
	if _, err := s.UpdateFunction(ctx, "f", func(f *Function) error { f.Timeout, f.RevisionID = 10, "r2"; return nil }); err != nil {
		t.Fatal(err)
	}
	v2, _ := s.PublishVersion(ctx, "f", "")
	if v2.Version != "2" || v2.Timeout != 10 {
		t.Errorf("second version: %+v", v2)
	}
	if old, _ := s.GetVersion(ctx, "f", "1"); old.Timeout != 3 {
		t.Errorf("version 1 changed: %+v", old)
	}
	if err := s.PutAlias(ctx, "f", Alias{Name: "live", FunctionVersion: "1", RevisionID: "a"}, false); err != nil {
		t.Fatal(err)
	}
	if err := s.PutAlias(ctx, "f", Alias{Name: "live", FunctionVersion: "2", RevisionID: "b"}, true); err != nil {
		t.Fatal(err)
	}
	if a, _ := s.GetAlias(ctx, "f", "live"); a.FunctionVersion != "2" {
		t.Errorf("alias: %+v", a)
	}
	n := 3
	if err := s.SetConcurrency(ctx, "f", &n); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Concurrency(ctx, "f"); got == nil || *got != 3 {
		t.Errorf("concurrency %v", got)
	}
	if err := s.SetConcurrency(ctx, "f", nil); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Concurrency(ctx, "f"); got != nil {
		t.Errorf("concurrency after delete %v", *got)
	}
}
