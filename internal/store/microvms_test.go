package store

import (
	"context"
	"errors"
	"testing"
	"time"
)

// Images keep their version numbers for good, names are unique, and a
// reopened store reads back what was written.
func TestMicroVMImages(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 7, 1, 10, 0, 0, 0, time.UTC)
	v1, err := s.CreateMicroVMImage(ctx, MicroVMImage{Name: "agent", Description: "d1", Created: t0},
		MicroVMImageVersion{Input: `{"a":1}`, State: "CREATING", Created: t0})
	if err != nil || v1.Version != 1 || v1.Image != "agent" {
		t.Fatalf("create: %+v, %v", v1, err)
	}
	if _, err := s.CreateMicroVMImage(ctx, MicroVMImage{Name: "agent", Created: t0}, MicroVMImageVersion{State: "CREATING", Created: t0}); !errors.Is(err, ErrExists) {
		t.Fatalf("second create: %v, want ErrExists", err)
	}
	if _, err := s.AddMicroVMImageVersion(ctx, "nope", "", MicroVMImageVersion{State: "CREATING", Created: t0}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("version of a missing image: %v, want ErrNotFound", err)
	}
	v2, err := s.AddMicroVMImageVersion(ctx, "agent", "d2", MicroVMImageVersion{Input: `{"a":2}`, State: "CREATING", Created: t0.Add(time.Minute)})
	if err != nil || v2.Version != 2 {
		t.Fatalf("add: %+v, %v", v2, err)
	}
	if err := s.DeleteMicroVMImageVersion(ctx, "agent", 2); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteMicroVMImageVersion(ctx, "agent", 2); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	v3, err := s.AddMicroVMImageVersion(ctx, "agent", "", MicroVMImageVersion{State: "CREATING", Created: t0.Add(2 * time.Minute)})
	if err != nil || v3.Version != 3 {
		t.Fatalf("a deleted version's number is not reused: %+v, %v", v3, err)
	}
	v1.State, v1.Reason, v1.Digest, v1.TemplateDir, v1.Built = "CREATED", "", "sha256:ab", "/tpl", t0.Add(time.Hour)
	if err := s.UpdateMicroVMImageVersion(ctx, v1); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s, err = Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	imgs, err := s.MicroVMImages(ctx)
	if err != nil || len(imgs) != 1 || imgs[0].LatestVersion != 3 || imgs[0].Description != "d2" || !imgs[0].Created.Equal(t0) {
		t.Fatalf("images: %+v, %v", imgs, err)
	}
	vs, err := s.MicroVMImageVersions(ctx)
	if err != nil || len(vs) != 2 {
		t.Fatalf("versions: %+v, %v", vs, err)
	}
	if got := vs[0]; got != v1 {
		t.Errorf("version 1 read back %+v, wrote %+v", got, v1)
	}
	if vs[1].Version != 3 || vs[1].State != "CREATING" || !vs[1].Built.IsZero() {
		t.Errorf("version 3: %+v", vs[1])
	}
	if err := s.DeleteMicroVMImage(ctx, "agent"); err != nil {
		t.Fatal(err)
	}
	if vs, _ := s.MicroVMImageVersions(ctx); len(vs) != 0 {
		t.Errorf("versions left after the image's delete: %+v", vs)
	}
	if err := s.DeleteMicroVMImage(ctx, "agent"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second image delete: %v", err)
	}
}

// A MicroVM's record is updated in place, its client token is its alone,
// and its running periods are metered.
func TestMicroVMRecords(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	t0 := time.Date(2026, 7, 1, 10, 0, 0, 0, time.UTC)
	m := MicroVM{ID: "mvm-1", ClientToken: "tok", InputHash: "h", Image: "agent", Version: 1, State: "PENDING", EnvDir: "/d/env-1",
		MemoryMiB: 512, IdlePolicy: `{"maxIdleDurationSeconds":60}`, MaxDuration: 3600, Started: t0, StateSince: t0}
	if err := s.PutMicroVM(ctx, m); err != nil {
		t.Fatal(err)
	}
	m.State, m.StateSince, m.LastActivity = "RUNNING", t0.Add(time.Second), t0.Add(2*time.Second)
	if err := s.PutMicroVM(ctx, m); err != nil {
		t.Fatal(err)
	}
	if err := s.PutMicroVM(ctx, MicroVM{ID: "mvm-2", ClientToken: "tok", Image: "agent", Version: 1, State: "PENDING", Started: t0, StateSince: t0}); !errors.Is(err, ErrExists) {
		t.Fatalf("a token given twice: %v, want ErrExists", err)
	}
	if err := s.PutMicroVM(ctx, MicroVM{ID: "mvm-3", Image: "agent", Version: 1, State: "PENDING", Started: t0.Add(time.Minute), StateSince: t0}); err != nil {
		t.Fatalf("no token: %v", err)
	}
	if err := s.PutMicroVM(ctx, MicroVM{ID: "mvm-4", Image: "agent", Version: 1, State: "PENDING", Started: t0.Add(2 * time.Minute), StateSince: t0}); err != nil {
		t.Fatalf("no token, twice: %v", err)
	}
	got, err := s.MicroVMs(ctx)
	if err != nil || len(got) != 3 {
		t.Fatalf("microvms: %+v, %v", got, err)
	}
	if got[0] != m {
		t.Errorf("read back %+v, wrote %+v", got[0], m)
	}
	if err := s.DeleteMicroVM(ctx, "mvm-3"); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.MicroVMs(ctx); len(got) != 2 {
		t.Errorf("after delete: %+v", got)
	}

	if err := s.MicroVMRunStarted(ctx, "mvm-1", "microvm:agent", 512, t0); err != nil {
		t.Fatal(err)
	}
	if err := s.MicroVMRunEnded(ctx, "mvm-1", t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := s.MicroVMRunStarted(ctx, "mvm-1", "microvm:agent", 512, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	runs, err := s.MicroVMRuns(ctx, t0.Add(30*time.Minute))
	if err != nil || len(runs) != 1 || !runs[0].Start.Equal(t0.Add(time.Hour)) || !runs[0].End.IsZero() {
		t.Fatalf("runs since the first ended: %+v, %v", runs, err)
	}
	runs, _ = s.MicroVMRuns(ctx, t0)
	if len(runs) != 2 {
		t.Fatalf("all runs: %+v", runs)
	}
}
