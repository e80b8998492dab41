package main

import (
	"bufio"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func postHook(t *testing.T, hookAddr, name, body string) int {
	t.Helper()
	resp, err := http.Post("http://"+hookAddr+hookPrefix+name, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestHooks(t *testing.T) {
	type post struct {
		name, body string
		status     int
	}
	big := strings.Repeat("p", maxHookBody+100)
	for _, tc := range []struct {
		name  string
		cfg   config
		posts []post
	}{
		{"all answered and recorded in order", config{}, []post{
			{"ready", "", 200}, {"validate", "", 200}, {"run", `{"payload":1}`, 200},
			{"suspend", "", 200}, {"resume", "", 200}, {"terminate", "", 200},
		}},
		{"READY_503 twice", config{ready503: 2}, []post{
			{"ready", "", 503}, {"ready", "", 503}, {"ready", "", 200}, {"ready", "", 200},
		}},
		{"VALIDATE_FAIL", config{validateFail: true}, []post{
			{"ready", "", 200}, {"validate", "", 500}, {"validate", "", 500},
		}},
		{"a run payload is kept up to 16 KB", config{}, []post{{"run", big, 200}}},
		{"an unknown hook is not found and not recorded", config{}, []post{{"bogus", "", 404}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.hooksFile = filepath.Join(t.TempDir(), "hooks.jsonl")
			_, _, hookAddr := startServers(t, tc.cfg)
			start := time.Now().UnixMilli()
			var want []hookCall
			for _, p := range tc.posts {
				if got := postHook(t, hookAddr, p.name, p.body); got != p.status {
					t.Errorf("POST %s: %d, want %d", p.name, got, p.status)
				}
				if p.status == http.StatusNotFound {
					continue
				}
				kept := p.body[:min(len(p.body), maxHookBody)]
				want = append(want, hookCall{Name: p.name, Body: kept, BodyBytes: int64(len(p.body)), Status: p.status})
			}
			var got []hookCall
			resp := getJSON(t, http.DefaultClient, "http://"+hookAddr+"/hooks", &got)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("GET /hooks: %d", resp.StatusCode)
			}
			checkCalls(t, "GET /hooks", got, want, start)
			checkCalls(t, "hooks file", readHooksFile(t, tc.cfg.hooksFile), want, start)
		})
	}
}

func checkCalls(t *testing.T, where string, got, want []hookCall, start int64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d calls, want %d: %+v", where, len(got), len(want), got)
	}
	prev := start
	for i := range got {
		ms := got[i].UnixMs
		if ms < prev || ms > time.Now().UnixMilli() {
			t.Errorf("%s: call %d at %d: want in order, after %d and not in the future", where, i, ms, prev)
		}
		prev = ms
		got[i].UnixMs = 0
		if got[i] != want[i] {
			t.Errorf("%s: call %d = %+v, want %+v", where, i, got[i], want[i])
		}
	}
}

func readHooksFile(t *testing.T, path string) []hookCall {
	t.Helper()
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var calls []hookCall
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var c hookCall
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			t.Fatalf("hooks file line %q: %v", sc.Text(), err)
		}
		calls = append(calls, c)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return calls
}

func TestHooksEmptyListIsAnArray(t *testing.T) {
	_, _, hookAddr := startServers(t, config{})
	resp, err := http.Get("http://" + hookAddr + "/hooks")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var raw json.RawMessage
	if err := json.NewDecoder(resp.Body).Decode(&raw); err != nil {
		t.Fatal(err)
	}
	if string(raw) != "[]" {
		t.Errorf("no calls: %s, want []", raw)
	}
}

func TestHookDelay(t *testing.T) {
	const delay = 300 * time.Millisecond
	_, _, hookAddr := startServers(t, config{hookDelay: delay, hookDelayOnly: "suspend"})
	for _, tc := range []struct {
		hook    string
		delayed bool
	}{{"run", false}, {"suspend", true}} {
		start := time.Now()
		if got := postHook(t, hookAddr, tc.hook, ""); got != http.StatusOK {
			t.Errorf("%s: %d", tc.hook, got)
		}
		if took := time.Since(start); (took >= delay) != tc.delayed {
			t.Errorf("%s took %v; delayed by %v: want %v", tc.hook, took, delay, tc.delayed)
		}
	}
}
