package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/hearthdev/hearth/internal/async"
	"github.com/hearthdev/hearth/internal/lambdaerr"
	"github.com/hearthdev/hearth/internal/store"
)

// Queues tells whether a queue's ARN names one of Hearth's queues, for the
// destinations and dead-letter queues that name one.
type Queues interface {
	// NameOf is the queue's name; an error when there is none.
	NameOf(arn string) (string, error)
}

// eventInvokeBody is what Put and UpdateFunctionEventInvokeConfig send.
type eventInvokeBody struct {
	MaximumRetryAttempts     *int                     `json:"MaximumRetryAttempts"`
	MaximumEventAgeInSeconds *int                     `json:"MaximumEventAgeInSeconds"`
	DestinationConfig        *store.DestinationConfig `json:"DestinationConfig"`
}

// checkEventInvoke checks the settings' bounds and destinations, in
// Lambda's words; function is the function they are for.
func (a *API) checkEventInvoke(ctx context.Context, function string, b eventInvokeBody) error {
	if n := b.MaximumRetryAttempts; n != nil && (*n < 0 || *n > 2) {
		return lambdaerr.InvalidParameter("1 validation error detected: Value '%d' at 'maximumRetryAttempts' failed to satisfy constraint: Member must have value between 0 and 2", *n)
	}
	if n := b.MaximumEventAgeInSeconds; n != nil && (*n < async.MinMaxAgeSeconds || *n > async.MaxMaxAgeSeconds) {
		return lambdaerr.InvalidParameter("1 validation error detected: Value '%d' at 'maximumEventAgeInSeconds' failed to satisfy constraint: Member must have value between %d and %d",
			*n, async.MinMaxAgeSeconds, async.MaxMaxAgeSeconds)
	}
	if d := b.DestinationConfig; d != nil {
		for _, dest := range []*store.Destination{d.OnSuccess, d.OnFailure} {
			if dest == nil || dest.Destination == "" {
				continue
			}
			if err := a.checkDestination(ctx, function, dest.Destination); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkDestination refuses a destination Hearth cannot deliver to: it
// must be one of its queues, or another function, that exists now.
func (a *API) checkDestination(ctx context.Context, function, arn string) error {
	if async.IsQueueARN(arn) {
		return a.checkQueue(arn, "destination")
	}
	fn, qualifier, ok := async.FunctionOfARN(arn)
	if !ok {
		return lambdaerr.InvalidParameter("The destination ARN %s is invalid: Hearth sends records to a queue (arn:aws:sqs:…) or a function (arn:aws:lambda:…:function:…)", arn)
	}
	if fn == function {
		// Its records would invoke it again, for ever.
		return lambdaerr.InvalidParameter("The destination ARN %s is the function itself: its records would invoke it again without end", arn)
	}
	if _, err := a.cfg.Store.Resolve(ctx, fn, qualifier); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return lambdaerr.InvalidParameter("The destination ARN %s is invalid: the function does not exist", arn)
		}
		return err
	}
	return nil
}

// checkQueue refuses a queue's ARN that names none of Hearth's queues.
func (a *API) checkQueue(arn, what string) error {
	if a.cfg.Queues == nil {
		return lambdaerr.InvalidParameter("The %s ARN %s is invalid: this daemon has no queues", what, arn)
	}
	if _, err := a.cfg.Queues.NameOf(arn); err != nil {
		return lambdaerr.InvalidParameter("The %s ARN %s is invalid: the queue does not exist", what, arn)
	}
	return nil
}

// checkDeadLetter checks a function's DeadLetterConfig: a queue of
// Hearth's (SNS topics, which Lambda also takes, Hearth has not); an
// empty TargetArn removes it.
func (a *API) checkDeadLetter(d *store.DeadLetterConfig) error {
	if d == nil || d.TargetArn == "" {
		return nil
	}
	if !async.IsQueueARN(d.TargetArn) {
		return lambdaerr.InvalidParameter("The DeadLetterConfig TargetArn %s is invalid: Hearth sends dead letters to a queue (arn:aws:sqs:…)", d.TargetArn)
	}
	return a.checkQueue(d.TargetArn, "DeadLetterConfig TargetArn")
}

// deadLetterOf is what a function keeps of a DeadLetterConfig sent: none
// for an empty TargetArn.
func deadLetterOf(d *store.DeadLetterConfig) *store.DeadLetterConfig {
	if d == nil || d.TargetArn == "" {
		return nil
	}
	return d
}

// eventInvokeRef reads the function and qualifier a request names, and
// checks that they exist; the qualifier is $LATEST's for none.
func (a *API) eventInvokeRef(r *http.Request) (name, qualifier string, err error) {
	f, err := a.resolve(r)
	if err != nil {
		return "", "", err
	}
	_, qualifier, _ = functionRef(r)
	return f.FunctionName, async.ConfigQualifier(qualifier), nil
}

func (a *API) noEventInvokeConfig(name, qualifier string) error {
	return lambdaerr.ResourceNotFound("The function %s:%s doesn't have an EventInvokeConfig", a.arn(name), qualifier)
}

// eventInvokeConfig fills what Lambda always answers with: the qualified
// ARN, the time, and both destinations (empty when unset).
func (a *API) eventInvokeConfig(name, qualifier string, b eventInvokeBody) store.EventInvokeConfig {
	c := store.EventInvokeConfig{FunctionArn: a.arn(name) + ":" + qualifier,
		LastModified:         float64(time.Now().UnixMilli()) / 1000,
		MaximumRetryAttempts: b.MaximumRetryAttempts, MaximumEventAgeInSeconds: b.MaximumEventAgeInSeconds,
		DestinationConfig: &store.DestinationConfig{OnSuccess: &store.Destination{}, OnFailure: &store.Destination{}}}
	if d := b.DestinationConfig; d != nil {
		if d.OnSuccess != nil {
			c.DestinationConfig.OnSuccess = d.OnSuccess
		}
		if d.OnFailure != nil {
			c.DestinationConfig.OnFailure = d.OnFailure
		}
	}
	return c
}

// putEventInvokeConfig sets a function's asynchronous settings, replacing
// all of them (what is not sent takes its default).
func (a *API) putEventInvokeConfig(w http.ResponseWriter, r *http.Request) {
	var body eventInvokeBody
	if err := decode(r, &body); err != nil {
		a.writeError(w, err)
		return
	}
	name, qualifier, err := a.eventInvokeRef(r)
	if err == nil {
		err = a.checkEventInvoke(r.Context(), name, body)
	}
	if err != nil {
		a.writeError(w, err)
		return
	}
	c := a.eventInvokeConfig(name, qualifier, body)
	if err := a.cfg.Store.PutEventInvokeConfig(r.Context(), name, qualifier, c); err != nil {
		a.writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, c)
}

// updateEventInvokeConfig changes the settings sent and keeps the others.
func (a *API) updateEventInvokeConfig(w http.ResponseWriter, r *http.Request) {
	var body eventInvokeBody
	if err := decode(r, &body); err != nil {
		a.writeError(w, err)
		return
	}
	name, qualifier, err := a.eventInvokeRef(r)
	if err == nil {
		err = a.checkEventInvoke(r.Context(), name, body)
	}
	if err != nil {
		a.writeError(w, err)
		return
	}
	cur, err := a.cfg.Store.EventInvokeConfig(r.Context(), name, qualifier)
	if errors.Is(err, store.ErrNotFound) {
		a.writeError(w, a.noEventInvokeConfig(name, qualifier))
		return
	}
	if err != nil {
		a.writeError(w, err)
		return
	}
	merged := eventInvokeBody{MaximumRetryAttempts: cur.MaximumRetryAttempts, MaximumEventAgeInSeconds: cur.MaximumEventAgeInSeconds,
		DestinationConfig: cur.DestinationConfig}
	if body.MaximumRetryAttempts != nil {
		merged.MaximumRetryAttempts = body.MaximumRetryAttempts
	}
	if body.MaximumEventAgeInSeconds != nil {
		merged.MaximumEventAgeInSeconds = body.MaximumEventAgeInSeconds
	}
	if d := body.DestinationConfig; d != nil {
		nd := store.DestinationConfig{}
		if merged.DestinationConfig != nil {
			nd = *merged.DestinationConfig
		}
		if d.OnSuccess != nil {
			nd.OnSuccess = d.OnSuccess
		}
		if d.OnFailure != nil {
			nd.OnFailure = d.OnFailure
		}
		merged.DestinationConfig = &nd
	}
	c := a.eventInvokeConfig(name, qualifier, merged)
	if err := a.cfg.Store.PutEventInvokeConfig(r.Context(), name, qualifier, c); err != nil {
		a.writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, c)
}

func (a *API) getEventInvokeConfig(w http.ResponseWriter, r *http.Request) {
	name, qualifier, err := a.eventInvokeRef(r)
	if err != nil {
		a.writeError(w, err)
		return
	}
	c, err := a.cfg.Store.EventInvokeConfig(r.Context(), name, qualifier)
	if errors.Is(err, store.ErrNotFound) {
		err = a.noEventInvokeConfig(name, qualifier)
	}
	if err != nil {
		a.writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, c)
}

func (a *API) deleteEventInvokeConfig(w http.ResponseWriter, r *http.Request) {
	name, qualifier, err := a.eventInvokeRef(r)
	if err != nil {
		a.writeError(w, err)
		return
	}
	err = a.cfg.Store.DeleteEventInvokeConfig(r.Context(), name, qualifier)
	if errors.Is(err, store.ErrNotFound) {
		err = a.noEventInvokeConfig(name, qualifier)
	}
	if err != nil {
		a.writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// listEventInvokeConfigs lists a function's settings of every qualifier,
// in pages (Marker is the index of the next one).
func (a *API) listEventInvokeConfigs(w http.ResponseWriter, r *http.Request) {
	name, _, err := functionRef(r)
	if err != nil {
		a.writeError(w, err)
		return
	}
	if _, err := a.cfg.Store.GetFunction(r.Context(), name); err != nil {
		a.writeError(w, notFound(err, a.arn(name)))
		return
	}
	q := r.URL.Query()
	max, start := 50, 0
	if s := q.Get("MaxItems"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 50 {
			a.writeError(w, lambdaerr.InvalidParameter("1 validation error detected: Value '%s' at 'maxItems' failed to satisfy constraint: Member must have value between 1 and 50", s))
			return
		}
		max = n
	}
	if s := q.Get("Marker"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			a.writeError(w, lambdaerr.InvalidParameter("Marker %q is not one this API gave", s))
			return
		}
		start = n
	}
	cs, err := a.cfg.Store.EventInvokeConfigs(r.Context(), name)
	if err != nil {
		a.writeError(w, err)
		return
	}
	out := map[string]any{}
	page := []store.EventInvokeConfig{}
	if start < len(cs) {
		page = cs[start:min(start+max, len(cs))]
	}
	out["FunctionEventInvokeConfigs"] = page
	if start+max < len(cs) {
		out["NextMarker"] = fmt.Sprint(start + max)
	}
	writeJSON(w, http.StatusOK, out)
}
