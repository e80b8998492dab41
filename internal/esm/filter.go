package esm

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
)

// Lambda's bounds on FilterCriteria: five filters a mapping (its default
// quota), a pattern of 4096 characters.
const (
	MaxFilters       = 5
	MaxPatternLength = 4096
)

// ErrPattern is the error of a pattern Hearth refuses: not Lambda's filter
// syntax, or an operator Hearth does not implement.
var ErrPattern = errors.New("invalid filter pattern")

// Filter is a mapping's FilterCriteria compiled: a record passes when any
// of its patterns matches (Lambda ORs the filters); no pattern passes all.
type Filter struct {
	patterns []node
}

// CompileFilter compiles FilterCriteria.Filters' patterns. Hearth
// implements the common part of Lambda's filter language: exact values
// (strings, numbers, booleans, null), prefix, suffix, equals-ignore-case,
// numeric comparisons and ranges, exists, and anything-but (a value, a
// list of values, or a prefix); other operators are refused, by name.
func CompileFilter(patterns []string) (*Filter, error) {
	if len(patterns) > MaxFilters {
		return nil, fmt.Errorf("%w: %d filters, at most %d", ErrPattern, len(patterns), MaxFilters)
	}
	f := &Filter{}
	for i, p := range patterns {
		if len(p) > MaxPatternLength {
			return nil, fmt.Errorf("%w: filter %d is %d characters long, at most %d", ErrPattern, i+1, len(p), MaxPatternLength)
		}
		n, err := compilePattern(p)
		if err != nil {
			return nil, fmt.Errorf("%w: filter %d: %v", ErrPattern, i+1, err)
		}
		f.patterns = append(f.patterns, n)
	}
	return f, nil
}

// Match says whether a record (a decoded JSON object) passes the filter.
func (f *Filter) Match(record map[string]any) bool {
	if f == nil || len(f.patterns) == 0 {
		return true
	}
	for _, p := range f.patterns {
		if p.match(record, true) {
			return true
		}
	}
	return false
}

// node is a pattern's object: each key's value is another object or a
// list of matchers (a leaf).
type node struct {
	fields   map[string]node
	matchers map[string][]matcher
}

// match says whether every key of the pattern matches v, an object;
// present is false when the object itself is absent from the record.
func (n node) match(v any, present bool) bool {
	obj, isObj := v.(map[string]any)
	if present && !isObj {
		// An array of objects matches when one of them does.
		if arr, ok := v.([]any); ok {
			for _, e := range arr {
				if n.match(e, true) {
					return true
				}
			}
		}
		return false
	}
	for k, sub := range n.fields {
		fv, ok := obj[k]
		if !sub.match(fv, ok) {
			return false
		}
	}
	for k, ms := range n.matchers {
		fv, ok := obj[k]
		if !matchLeaf(ms, fv, ok) {
			return false
		}
	}
	return true
}

// matchLeaf says whether a field (present or not) matches one of ms; a
// list value matches when one of its elements does.
func matchLeaf(ms []matcher, v any, present bool) bool {
	for _, m := range ms {
		if m.kind == kindExists {
			if m.exists == present {
				return true
			}
			continue
		}
		if !present {
			continue
		}
		if arr, ok := v.([]any); ok {
			if slices.ContainsFunc(arr, m.match) {
				return true
			}
			continue
		}
		if m.match(v) {
			return true
		}
	}
	return false
}

type matcherKind int

const (
	kindEqual matcherKind = iota
	kindPrefix
	kindSuffix
	kindEqualsIgnoreCase
	kindAnythingBut
	kindAnythingButPrefix
	kindNumeric
	kindExists
)

type matcher struct {
	kind   matcherKind
	value  any     // kindEqual: string, float64, bool or nil
	str    string  // prefix, suffix, equals-ignore-case, anything-but prefix
	values []any   // anything-but: strings and float64s
	ranges []bound // numeric: one or two bounds
	exists bool    // exists
}

type bound struct {
	op string
	n  float64
}

func (m matcher) match(v any) bool {
	switch m.kind {
	case kindEqual:
		return equalValue(m.value, v)
	case kindPrefix:
		s, ok := v.(string)
		return ok && strings.HasPrefix(s, m.str)
	case kindSuffix:
		s, ok := v.(string)
		return ok && strings.HasSuffix(s, m.str)
	case kindEqualsIgnoreCase:
		s, ok := v.(string)
		return ok && strings.EqualFold(s, m.str)
	case kindAnythingBut:
		for _, x := range m.values {
			if equalValue(x, v) {
				return false
			}
		}
		return true
	case kindAnythingButPrefix:
		s, ok := v.(string)
		return ok && !strings.HasPrefix(s, m.str)
	case kindNumeric:
		f, ok := v.(float64)
		if !ok {
			return false
		}
		for _, b := range m.ranges {
			if !b.holds(f) {
				return false
			}
		}
		return true
	}
	return false
}

func (b bound) holds(f float64) bool {
	switch b.op {
	case "=":
		return f == b.n
	case "<":
		return f < b.n
	case "<=":
		return f <= b.n
	case ">":
		return f > b.n
	case ">=":
		return f >= b.n
	}
	return false
}

// equalValue compares a pattern's value with a record's, each as JSON
// decodes it: numbers by value.
func equalValue(p, v any) bool {
	switch p := p.(type) {
	case nil:
		return v == nil
	case string:
		s, ok := v.(string)
		return ok && s == p
	case float64:
		f, ok := v.(float64)
		return ok && f == p
	case bool:
		b, ok := v.(bool)
		return ok && b == p
	}
	return false
}

func compilePattern(p string) (node, error) {
	d := json.NewDecoder(strings.NewReader(p))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return node{}, fmt.Errorf("not JSON: %v", err)
	}
	if d.More() {
		return node{}, errors.New("not one JSON object")
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return node{}, errors.New("a pattern is a JSON object")
	}
	if len(obj) == 0 {
		return node{}, errors.New("a pattern has at least one key")
	}
	return compileNode(obj, "")
}

func compileNode(obj map[string]any, path string) (node, error) {
	n := node{fields: map[string]node{}, matchers: map[string][]matcher{}}
	for k, v := range obj {
		at := path + k
		if strings.HasPrefix(k, "$") {
			return n, fmt.Errorf("%s: %s is not supported by Hearth", at, k)
		}
		switch v := v.(type) {
		case map[string]any:
			if len(v) == 0 {
				return n, fmt.Errorf("%s: an empty object matches nothing", at)
			}
			sub, err := compileNode(v, at+".")
			if err != nil {
				return n, err
			}
			n.fields[k] = sub
		case []any:
			if len(v) == 0 {
				return n, fmt.Errorf("%s: an empty list matches nothing", at)
			}
			for _, e := range v {
				m, err := compileMatcher(e)
				if err != nil {
					return n, fmt.Errorf("%s: %v", at, err)
				}
				n.matchers[k] = append(n.matchers[k], m)
			}
		default:
			return n, fmt.Errorf("%s: a value to match goes in a list, as [%s]", at, show(v))
		}
	}
	return n, nil
}

func compileMatcher(e any) (matcher, error) {
	switch e := e.(type) {
	case nil, string, bool:
		return matcher{kind: kindEqual, value: e}, nil
	case json.Number:
		f, err := number(e)
		if err != nil {
			return matcher{}, err
		}
		return matcher{kind: kindEqual, value: f}, nil
	case map[string]any:
		if len(e) != 1 {
			return matcher{}, fmt.Errorf("an operator object has one key: %s", show(e))
		}
		for op, arg := range e {
			return compileOperator(op, arg)
		}
	}
	return matcher{}, fmt.Errorf("%s cannot be matched", show(e))
}

func compileOperator(op string, arg any) (matcher, error) {
	switch op {
	case "prefix", "suffix", "equals-ignore-case":
		s, ok := arg.(string)
		if !ok {
			return matcher{}, fmt.Errorf("%s takes a string, not %s", op, show(arg))
		}
		kind := map[string]matcherKind{"prefix": kindPrefix, "suffix": kindSuffix, "equals-ignore-case": kindEqualsIgnoreCase}[op]
		return matcher{kind: kind, str: s}, nil
	case "exists":
		b, ok := arg.(bool)
		if !ok {
			return matcher{}, fmt.Errorf("exists takes true or false, not %s", show(arg))
		}
		return matcher{kind: kindExists, exists: b}, nil
	case "numeric":
		return compileNumeric(arg)
	case "anything-but":
		return compileAnythingBut(arg)
	}
	return matcher{}, fmt.Errorf("the operator %q is not supported by Hearth (it supports exact values, prefix, suffix, equals-ignore-case, numeric, exists and anything-but)", op)
}

func compileNumeric(arg any) (matcher, error) {
	list, ok := arg.([]any)
	if !ok || (len(list) != 2 && len(list) != 4) {
		return matcher{}, fmt.Errorf("numeric takes [op, n] or [op, n, op, n], not %s", show(arg))
	}
	m := matcher{kind: kindNumeric}
	for i := 0; i < len(list); i += 2 {
		op, ok := list[i].(string)
		if !ok || !slices.Contains([]string{"=", "<", "<=", ">", ">="}, op) {
			return matcher{}, fmt.Errorf("numeric: %s is not one of =, <, <=, >, >=", show(list[i]))
		}
		num, ok := list[i+1].(json.Number)
		if !ok {
			return matcher{}, fmt.Errorf("numeric: %s is not a number", show(list[i+1]))
		}
		f, err := number(num)
		if err != nil {
			return matcher{}, err
		}
		m.ranges = append(m.ranges, bound{op: op, n: f})
	}
	if len(m.ranges) == 2 {
		// A range: a lower bound, then an upper one.
		lo, hi := m.ranges[0], m.ranges[1]
		if (lo.op != ">" && lo.op != ">=") || (hi.op != "<" && hi.op != "<=") || lo.n >= hi.n {
			return matcher{}, fmt.Errorf("numeric: a range is [\">\" or \">=\", low, \"<\" or \"<=\", high] with low < high, not %s", show(arg))
		}
	}
	return m, nil
}

func compileAnythingBut(arg any) (matcher, error) {
	switch a := arg.(type) {
	case string:
		return matcher{kind: kindAnythingBut, values: []any{a}}, nil
	case json.Number:
		f, err := number(a)
		if err != nil {
			return matcher{}, err
		}
		return matcher{kind: kindAnythingBut, values: []any{f}}, nil
	case []any:
		if len(a) == 0 {
			return matcher{}, errors.New("anything-but takes a non-empty list")
		}
		m := matcher{kind: kindAnythingBut}
		for _, e := range a {
			switch e := e.(type) {
			case string:
				m.values = append(m.values, e)
			case json.Number:
				f, err := number(e)
				if err != nil {
					return matcher{}, err
				}
				m.values = append(m.values, f)
			default:
				return matcher{}, fmt.Errorf("anything-but lists strings or numbers, not %s", show(e))
			}
		}
		return m, nil
	case map[string]any:
		if p, ok := a["prefix"].(string); ok && len(a) == 1 {
			return matcher{kind: kindAnythingButPrefix, str: p}, nil
		}
		return matcher{}, fmt.Errorf("anything-but takes a value, a list or {\"prefix\": …}; %s is not supported by Hearth", show(a))
	}
	return matcher{}, fmt.Errorf("anything-but cannot take %s", show(arg))
}

func number(n json.Number) (float64, error) {
	f, err := n.Float64()
	if err != nil || math.IsInf(f, 0) {
		return 0, fmt.Errorf("%s is not a number Hearth can compare", n)
	}
	return f, nil
}

func show(v any) string {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return fmt.Sprint(v)
	}
	return strings.TrimSpace(buf.String())
}
