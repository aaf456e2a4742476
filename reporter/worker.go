package reporter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/ciel-ci/ciel/reporter/gitlabstatus"
	"github.com/ciel-ci/ciel/reporter/status"
)

type outcome int

const (
	finished outcome = iota // nothing left to do for now
	retry                   // try again after the key's backoff
	wait                    // wait for the TaskRun cache
)

func (r *Reporter) processNext(ctx context.Context) bool {
	key, shutdown := r.queue.Get()
	if shutdown {
		return false
	}
	defer r.queue.Done(key)
	out, after := r.process(ctx, key)
	switch out {
	case finished:
		r.queue.Forget(key)
	case retry:
		d := r.limiter.When(key)
		r.queue.AddAfter(key, max(d, after))
	case wait:
		r.queue.AddAfter(key, r.opts.detailWait)
	}
	return true
}

// process does what key needs: post its state, record it, or forget it.
func (r *Reporter) process(ctx context.Context, key Key) (outcome, time.Duration) {
	r.mu.Lock()
	e := r.entries[key]
	if e == nil {
		r.mu.Unlock()
		return finished, 0
	}
	snap := *e
	want := desired(e)
	r.mu.Unlock()

	log := r.opts.log.With("key", key.String(), "cluster", snap.cl.name, "namespace", snap.pr.Namespace, "name", snap.pr.Name)
	if want.Rank() <= snap.posted.Rank() {
		if snap.deleted {
			r.forget(key, snap.uid)
			return finished, 0
		}
		if r.opts.record && snap.recorded.Rank() < snap.posted.Rank() {
			return r.record(ctx, log, key, &snap, snap.posted)
		}
		return finished, 0
	}

	desc, complete := status.Describe(snap.pr, want, snap.cl)
	if snap.deleted && !status.StateOf(snap.pr).Terminal() {
		desc = status.Truncate(fmt.Sprintf("canceled: PipelineRun %s/%s was deleted before it finished", snap.pr.Namespace, snap.pr.Name), status.MaxLength)
		complete = true
	}
	if !complete && snap.waits < r.opts.detailWaits {
		r.mu.Lock()
		if e := r.entries[key]; e != nil && e.uid == snap.uid {
			e.waits++
		}
		r.mu.Unlock()
		return wait, 0
	}
	s := status.Status{Commit: snap.commit, Name: key.Name, State: want, Description: desc}
	if r.opts.url != nil {
		u, err := r.opts.url.Render(status.URLData{
			Cluster: snap.cl.name, Namespace: snap.pr.Namespace, Name: snap.pr.Name, UID: string(snap.uid),
			Pipeline: snap.commit.Pipeline, ProjectID: snap.commit.ProjectID, Project: snap.commit.Project,
			ProjectURL: snap.commit.ProjectURL, SHA: snap.commit.SHA, Ref: snap.commit.Ref,
		})
		if err != nil {
			log.Warn("posting without target_url", "error", err)
		}
		s.TargetURL = u
	}

	start := time.Now()
	err := r.poster.Post(ctx, s)
	r.m.postDuration.Observe(time.Since(start).Seconds())
	var result string
	switch {
	case err == nil:
		result = "posted"
		log.Info("commit status posted", "state", want, "description", desc)
	case errors.Is(err, gitlabstatus.ErrStateReached):
		result = "already"
		log.Info("commit status already in that state", "state", want)
	case errors.Is(err, gitlabstatus.ErrRejected):
		result = "rejected"
		r.m.gitlabErrors.WithLabelValues(gitlabstatus.Code(err)).Inc()
		log.Error("gitlab rejected the commit status, not retrying", "state", want, "error", err)
	default:
		r.m.posts.WithLabelValues(string(want), "error").Inc()
		r.m.gitlabErrors.WithLabelValues(gitlabstatus.Code(err)).Inc()
		var ge *gitlabstatus.Error
		var after time.Duration
		if errors.As(err, &ge) {
			after = ge.RetryAfter
		}
		log.Warn("posting commit status failed, will retry", "state", want, "attempt", r.queue.NumRequeues(key)+1, "error", err)
		return retry, after
	}
	r.m.posts.WithLabelValues(string(want), result).Inc()

	r.mu.Lock()
	if e := r.entries[key]; e != nil && e.uid == snap.uid && e.posted.Rank() < want.Rank() {
		e.posted, e.waits = want, 0
	}
	r.mu.Unlock()
	if snap.deleted {
		r.forget(key, snap.uid)
		return finished, 0
	}
	if !r.opts.record {
		return finished, 0
	}
	return r.record(ctx, log, key, &snap, want)
}

// record writes state into the run's annotation.
func (r *Reporter) record(ctx context.Context, log *slog.Logger, key Key, e *entry, state status.State) (outcome, time.Duration) {
	// The UID makes the patch fail rather than touch a namesake created
	// after the run was deleted.
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{
		"uid":         e.uid,
		"annotations": map[string]string{status.AnnotationReported: string(state)},
	}})
	if err != nil {
		return finished, 0
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	_, err = e.cl.client.TektonV1().PipelineRuns(e.pr.Namespace).Patch(ctx, e.pr.Name, types.MergePatchType, patch,
		metav1.PatchOptions{FieldManager: "ciel-reporter"})
	switch {
	case err == nil:
	case apierrors.IsNotFound(err), apierrors.IsConflict(err), apierrors.IsInvalid(err):
		return finished, 0 // the run is gone
	case apierrors.IsForbidden(err):
		r.m.recordErrors.WithLabelValues(e.cl.name).Inc()
		log.Error("cannot record the posted state on the pipelinerun (patch not allowed); a restart will post it again", "error", err)
		r.mu.Lock()
		if cur := r.entries[key]; cur != nil && cur.uid == e.uid && cur.recorded.Rank() < state.Rank() {
			cur.recorded = state // do not retry what RBAC forbids
		}
		r.mu.Unlock()
		return finished, 0
	default:
		r.m.recordErrors.WithLabelValues(e.cl.name).Inc()
		log.Warn("recording the posted state on the pipelinerun failed, will retry", "error", err)
		return retry, 0
	}
	r.mu.Lock()
	if cur := r.entries[key]; cur != nil && cur.uid == e.uid && cur.recorded.Rank() < state.Rank() {
		cur.recorded = state
	}
	r.mu.Unlock()
	return finished, 0
}

// forget drops the entry of a deleted run.
func (r *Reporter) forget(key Key, uid types.UID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e := r.entries[key]; e != nil && e.uid == uid {
		delete(r.entries, key)
	}
}
