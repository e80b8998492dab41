package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/hearthdev/hearth/internal/esm"
	"github.com/hearthdev/hearth/internal/lambdaerr"
	"github.com/hearthdev/hearth/internal/store"
)

// EventSources runs the event source mappings' pollers (esm.Manager).
type EventSources interface {
	// QueueName returns the name of the queue an ARN names; an error
	// wrapping esm.ErrNoQueue when it is none of Hearth's queues.
	QueueName(arn string) (string, error)
	// Changed settles a mapping the API wrote in a transitional state.
	Changed(ctx context.Context, uuid string) error
}

// The bounds of an SQS mapping's settings, as Lambda has them.
const (
	esmDefaultBatchSize  = 10
	esmMaxBatchSize      = 10000
	esmMaxBatchNoWindow  = 10
	esmMaxWindow         = 300
	esmMinConcurrency    = 2
	esmMaxConcurrency    = 1000
	esmDefaultListItems  = 100
	reportBatchItemFails = "ReportBatchItemFailures"
)

// esmRequest is CreateEventSourceMapping's and UpdateEventSourceMapping's
// body: the fields that apply to an SQS queue (others are refused).
type esmRequest struct {
	FunctionName                   *string            `json:"FunctionName"`
	EventSourceArn                 *string            `json:"EventSourceArn"`
	BatchSize                      *int               `json:"BatchSize"`
	MaximumBatchingWindowInSeconds *int               `json:"MaximumBatchingWindowInSeconds"`
	FunctionResponseTypes          *[]string          `json:"FunctionResponseTypes"`
	ScalingConfig                  *esmScalingConfig  `json:"ScalingConfig"`
	FilterCriteria                 *esmFilterCriteria `json:"FilterCriteria"`
	Enabled                        *bool              `json:"Enabled"`
}

// esmFields are the request fields Hearth takes; each other field of
// Lambda's is for streams, Kafka, MQ or DocumentDB, or not implemented.
var esmFields = []string{"FunctionName", "EventSourceArn", "BatchSize", "MaximumBatchingWindowInSeconds",
	"FunctionResponseTypes", "ScalingConfig", "FilterCriteria", "Enabled"}

type esmScalingConfig struct {
	MaximumConcurrency *int `json:"MaximumConcurrency,omitempty"`
}

type esmFilterCriteria struct {
	Filters []esmFilter `json:"Filters"`
}

type esmFilter struct {
	Pattern *string `json:"Pattern,omitempty"`
}

// esmConfiguration is Lambda's EventSourceMappingConfiguration, for an
// SQS queue.
type esmConfiguration struct {
	UUID                           string             `json:"UUID"`
	EventSourceArn                 string             `json:"EventSourceArn"`
	EventSourceMappingArn          string             `json:"EventSourceMappingArn"`
	FunctionArn                    string             `json:"FunctionArn"`
	BatchSize                      int                `json:"BatchSize"`
	MaximumBatchingWindowInSeconds int                `json:"MaximumBatchingWindowInSeconds"`
	FunctionResponseTypes          []string           `json:"FunctionResponseTypes,omitempty"`
	ScalingConfig                  *esmScalingConfig  `json:"ScalingConfig,omitempty"`
	FilterCriteria                 *esmFilterCriteria `json:"FilterCriteria,omitempty"`
	// LastModified is a timestamp: seconds since the epoch, as the
	// restJson protocol sends one.
	LastModified          float64 `json:"LastModified"`
	LastProcessingResult  string  `json:"LastProcessingResult,omitempty"`
	State                 string  `json:"State"`
	StateTransitionReason string  `json:"StateTransitionReason"`
}

func (a *API) esmConfiguration(m store.EventSourceMapping) esmConfiguration {
	fnArn := a.arn(m.Function)
	if m.Qualifier != "" {
		fnArn += ":" + m.Qualifier
	}
	c := esmConfiguration{UUID: m.UUID, EventSourceArn: m.EventSourceArn,
		EventSourceMappingArn: "arn:aws:lambda:" + a.cfg.Region + ":000000000000:event-source-mapping:" + m.UUID,
		FunctionArn:           fnArn, BatchSize: m.BatchSize, MaximumBatchingWindowInSeconds: m.MaximumBatchingWindowInSeconds,
		LastModified: float64(m.LastModified.UnixMilli()) / 1000, LastProcessingResult: m.LastProcessingResult,
		State: m.State, StateTransitionReason: m.StateTransitionReason}
	if m.ReportBatchItemFailures {
		c.FunctionResponseTypes = []string{reportBatchItemFails}
	}
	if m.MaximumConcurrency > 0 {
		n := m.MaximumConcurrency
		c.ScalingConfig = &esmScalingConfig{MaximumConcurrency: &n}
	}
	if len(m.Filters) > 0 {
		c.FilterCriteria = &esmFilterCriteria{}
		for _, p := range m.Filters {
			c.FilterCriteria.Filters = append(c.FilterCriteria.Filters, esmFilter{Pattern: &p})
		}
	}
	return c
}

// eventSources is the daemon's mapping manager, or the refusal when it
// runs none (no queues).
func (a *API) eventSources() (EventSources, error) {
	if a.cfg.EventSources == nil {
		return nil, lambdaerr.InvalidParameter("This Hearth daemon runs no queues, so it takes no event source mappings")
	}
	return a.cfg.EventSources, nil
}

// decodeESM reads a mapping request, refusing the fields that do not
// apply to an SQS queue by name.
func decodeESM(r *http.Request) (esmRequest, error) {
	var raw map[string]json.RawMessage
	var req esmRequest
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return req, err
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		return req, lambdaerr.InvalidParameter("the request body is not valid JSON: %v", err)
	}
	var other []string
	for k := range raw {
		if !slices.Contains(esmFields, k) {
			other = append(other, k)
		}
	}
	if len(other) > 0 {
		sort.Strings(other)
		return req, lambdaerr.InvalidParameter("%s: not supported for an Amazon SQS event source by Hearth (it takes %s)",
			strings.Join(other, ", "), strings.Join(esmFields, ", "))
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return req, lambdaerr.InvalidParameter("the request body is not valid JSON: %v", err)
	}
	return req, nil
}

// apply applies a request to a mapping's record (a new one's defaults
// set) and checks the result, as Lambda does for an SQS queue.
func (req esmRequest) apply(m *store.EventSourceMapping) error {
	if req.BatchSize != nil {
		if n := *req.BatchSize; n < 1 || n > esmMaxBatchSize {
			return lambdaerr.InvalidParameter("1 validation error detected: Value '%d' at 'batchSize' failed to satisfy constraint: Member must have value between 1 and %d", n, esmMaxBatchSize)
		}
		m.BatchSize = *req.BatchSize
	}
	if req.MaximumBatchingWindowInSeconds != nil {
		if n := *req.MaximumBatchingWindowInSeconds; n < 0 || n > esmMaxWindow {
			return lambdaerr.InvalidParameter("1 validation error detected: Value '%d' at 'maximumBatchingWindowInSeconds' failed to satisfy constraint: Member must have value between 0 and %d", n, esmMaxWindow)
		}
		m.MaximumBatchingWindowInSeconds = *req.MaximumBatchingWindowInSeconds
	}
	if m.BatchSize > esmMaxBatchNoWindow && m.MaximumBatchingWindowInSeconds < 1 {
		return lambdaerr.InvalidParameter("Maximum batch window in seconds must be greater than 0 if maximum batch size is greater than %d", esmMaxBatchNoWindow)
	}
	if req.FunctionResponseTypes != nil {
		m.ReportBatchItemFailures = false
		for _, t := range *req.FunctionResponseTypes {
			if t != reportBatchItemFails {
				return lambdaerr.InvalidParameter("1 validation error detected: Value '[%s]' at 'functionResponseTypes' failed to satisfy constraint: Member must satisfy enum value set: [%s]", t, reportBatchItemFails)
			}
			m.ReportBatchItemFailures = true
		}
	}
	if req.ScalingConfig != nil {
		// An empty ScalingConfig removes the limit.
		m.MaximumConcurrency = 0
		if c := req.ScalingConfig.MaximumConcurrency; c != nil {
			if *c < esmMinConcurrency || *c > esmMaxConcurrency {
				return lambdaerr.InvalidParameter("1 validation error detected: Value '%d' at 'scalingConfig.maximumConcurrency' failed to satisfy constraint: Member must have value between %d and %d", *c, esmMinConcurrency, esmMaxConcurrency)
			}
			m.MaximumConcurrency = *c
		}
	}
	if req.FilterCriteria != nil {
		// Empty Filters remove the filter.
		var patterns []string
		for _, f := range req.FilterCriteria.Filters {
			if f.Pattern == nil {
				return lambdaerr.InvalidParameter("Invalid filter pattern definition: a filter has no Pattern")
			}
			patterns = append(patterns, *f.Pattern)
		}
		if _, err := esm.CompileFilter(patterns); err != nil {
			return lambdaerr.InvalidParameter("Invalid filter pattern definition. %v", err)
		}
		m.Filters = patterns
	}
	if req.Enabled != nil {
		m.Enabled = *req.Enabled
	}
	return nil
}

// esmFunction resolves a request's FunctionName to a function that
// exists.
func (a *API) esmFunction(ctx context.Context, ref string) (name, qualifier string, err error) {
	if name, qualifier, err = parseFunctionRef(ref, ""); err != nil {
		return "", "", err
	}
	if _, err := a.cfg.Store.Resolve(ctx, name, qualifier); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			arn := a.arn(name)
			if qualifier != "" {
				arn += ":" + qualifier
			}
			return "", "", lambdaerr.ResourceNotFound("Function not found: %s", arn)
		}
		return "", "", err
	}
	return name, qualifier, nil
}

func (a *API) createEventSourceMapping(w http.ResponseWriter, r *http.Request) {
	ev, err := a.eventSources()
	if err != nil {
		a.writeError(w, err)
		return
	}
	req, err := decodeESM(r)
	if err != nil {
		a.writeError(w, err)
		return
	}
	if req.FunctionName == nil || *req.FunctionName == "" {
		a.writeError(w, lambdaerr.InvalidParameter("FunctionName is required"))
		return
	}
	if req.EventSourceArn == nil || *req.EventSourceArn == "" {
		a.writeError(w, lambdaerr.InvalidParameter("EventSourceArn is required: the ARN of one of Hearth's queues (arn:aws:sqs:%s:000000000000:<name>)", a.cfg.Region))
		return
	}
	ctx := r.Context()
	arn := *req.EventSourceArn
	if _, err := ev.QueueName(arn); err != nil {
		if errors.Is(err, esm.ErrNoQueue) {
			a.writeError(w, lambdaerr.InvalidParameter("EventSourceArn %s is not one of Hearth's queues: %v", arn, err))
			return
		}
		a.writeError(w, err)
		return
	}
	name, qualifier, err := a.esmFunction(ctx, *req.FunctionName)
	if err != nil {
		a.writeError(w, err)
		return
	}
	m := store.EventSourceMapping{UUID: uuid.NewString(), Function: name, Qualifier: qualifier, EventSourceArn: arn,
		BatchSize: esmDefaultBatchSize, Enabled: true, State: esm.StateCreating, StateTransitionReason: "USER_INITIATED",
		LastModified: time.Now().UTC()}
	if err := req.apply(&m); err != nil {
		a.writeError(w, err)
		return
	}
	existing, _, err := a.cfg.Store.ListEventSourceMappings(ctx, store.ESMFilter{Function: name, EventSourceArn: arn}, "", 1)
	if err != nil {
		a.writeError(w, err)
		return
	}
	if len(existing) > 0 {
		a.writeError(w, lambdaerr.ResourceConflict("An event source mapping with SQS arn (\" %s \") and function (\" %s \") already exists. Please update or delete the existing mapping with UUID %s",
			arn, name, existing[0].UUID))
		return
	}
	if err := a.cfg.Store.CreateEventSourceMapping(ctx, m); err != nil {
		a.writeError(w, err)
		return
	}
	a.esmChanged(ctx, ev, m.UUID)
	writeJSON(w, http.StatusAccepted, a.esmConfiguration(m))
}

// esmChanged has the manager settle a mapping; a failure leaves it in its
// transitional state, which the next daemon's start settles.
func (a *API) esmChanged(ctx context.Context, ev EventSources, id string) {
	if err := ev.Changed(context.WithoutCancel(ctx), id); err != nil {
		a.cfg.Log.Warn("api: settling an event source mapping", "uuid", id, "err", err)
	}
}

// esmNotFound is Lambda's answer for an unknown UUID.
func esmNotFound(err error) error {
	if errors.Is(err, store.ErrNotFound) {
		return lambdaerr.ResourceNotFound("The resource you requested does not exist.")
	}
	return err
}

func (a *API) getEventSourceMapping(w http.ResponseWriter, r *http.Request) {
	m, err := a.cfg.Store.GetEventSourceMapping(r.Context(), r.PathValue("uuid"))
	if err != nil {
		a.writeError(w, esmNotFound(err))
		return
	}
	writeJSON(w, http.StatusOK, a.esmConfiguration(m))
}

// resourceInUse is Lambda's ResourceInUseException (400).
func resourceInUse(format string, args ...any) error {
	le := lambdaerr.InvalidParameter(format, args...)
	le.Type = "ResourceInUseException"
	return le
}

func (a *API) updateEventSourceMapping(w http.ResponseWriter, r *http.Request) {
	ev, err := a.eventSources()
	if err != nil {
		a.writeError(w, err)
		return
	}
	req, err := decodeESM(r)
	if err != nil {
		a.writeError(w, err)
		return
	}
	if req.EventSourceArn != nil {
		a.writeError(w, lambdaerr.InvalidParameter("EventSourceArn cannot be changed: delete the mapping and create another"))
		return
	}
	ctx := r.Context()
	var name, qualifier string
	if req.FunctionName != nil {
		if name, qualifier, err = a.esmFunction(ctx, *req.FunctionName); err != nil {
			a.writeError(w, err)
			return
		}
	}
	m, err := a.cfg.Store.UpdateEventSourceMapping(ctx, r.PathValue("uuid"), func(m *store.EventSourceMapping) error {
		if m.State == esm.StateDeleting {
			return resourceInUse("Cannot update the event source mapping because it is being deleted.")
		}
		was := m.Enabled
		if err := req.apply(m); err != nil {
			return err
		}
		if req.FunctionName != nil {
			m.Function, m.Qualifier = name, qualifier
		}
		switch {
		case m.Enabled && !was:
			m.State = esm.StateEnabling
		case !m.Enabled && was:
			m.State = esm.StateDisabling
		default:
			m.State = esm.StateUpdating
		}
		m.StateTransitionReason, m.LastModified = "USER_INITIATED", time.Now().UTC()
		return nil
	})
	if err != nil {
		a.writeError(w, esmNotFound(err))
		return
	}
	a.esmChanged(ctx, ev, m.UUID)
	writeJSON(w, http.StatusAccepted, a.esmConfiguration(m))
}

func (a *API) deleteEventSourceMapping(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	m, err := a.cfg.Store.UpdateEventSourceMapping(ctx, r.PathValue("uuid"), func(m *store.EventSourceMapping) error {
		m.State, m.StateTransitionReason, m.LastModified = esm.StateDeleting, "USER_INITIATED", time.Now().UTC()
		return nil
	})
	if err != nil {
		a.writeError(w, esmNotFound(err))
		return
	}
	if ev, err := a.eventSources(); err == nil {
		a.esmChanged(ctx, ev, m.UUID)
	} else if err := a.cfg.Store.DeleteEventSourceMapping(ctx, m.UUID); err != nil && !errors.Is(err, store.ErrNotFound) {
		// No manager to settle it: the row goes now.
		a.writeError(w, err)
		return
	}
	writeJSON(w, http.StatusAccepted, a.esmConfiguration(m))
}

func (a *API) listEventSourceMappings(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	max := esmDefaultListItems
	if s := q.Get("MaxItems"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 10000 {
			a.writeError(w, lambdaerr.InvalidParameter("MaxItems must be between 1 and 10000"))
			return
		}
		max = n
	}
	f := store.ESMFilter{EventSourceArn: q.Get("EventSourceArn")}
	if ref := q.Get("FunctionName"); ref != "" {
		name, qualifier, err := parseFunctionRef(ref, "")
		if err != nil {
			a.writeError(w, err)
			return
		}
		f.Function, f.Qualifier = name, qualifier
	}
	ms, next, err := a.cfg.Store.ListEventSourceMappings(r.Context(), f, q.Get("Marker"), max)
	if err != nil {
		a.writeError(w, err)
		return
	}
	out := struct {
		EventSourceMappings []esmConfiguration `json:"EventSourceMappings"`
		NextMarker          string             `json:"NextMarker,omitempty"`
	}{EventSourceMappings: []esmConfiguration{}, NextMarker: next}
	for _, m := range ms {
		out.EventSourceMappings = append(out.EventSourceMappings, a.esmConfiguration(m))
	}
	writeJSON(w, http.StatusOK, out)
}
