package server

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"

	"github.com/ciel-ci/ciel/interceptor/webhook"
)

// MaxDeliveryIDBytes bounds a delivery ID (Idempotency-Key,
// X-Gitlab-Event-UUID, webhook-id). GitLab sends UUIDs (36 bytes); a longer
// ID is refused rather than remembered.
const MaxDeliveryIDBytes = 256

// ExtensionDelivery is the key of the extension the interceptor adds to
// every accepted delivery: {"name_suffix": "<16 lowercase hex>"}.
const ExtensionDelivery = "delivery"

// delivery identifies one delivery for one trigger.
type delivery struct {
	// id is what dedup and name_suffix key on; "" when the delivery
	// carries none.
	id string
	// signed says id is the signed webhook-id.
	signed bool
}

// deliveryOf picks the delivery's ID. When the signature was verified it is
// the signed webhook-id: the Idempotency-Key is not covered by the
// signature, so a replayed signed delivery with a fresh key would otherwise
// pass dedup. Otherwise GitLab's Idempotency-Key, else the event UUID (the
// same on retries). An ID over MaxDeliveryIDBytes is an error.
func deliveryOf(h http.Header, signed bool) (delivery, error) {
	d := delivery{signed: signed}
	name := webhook.HeaderID
	switch {
	case signed:
		d.id = h.Get(webhook.HeaderID)
	case h.Get("Idempotency-Key") != "":
		name, d.id = "Idempotency-Key", h.Get("Idempotency-Key")
	default:
		name, d.id = "X-Gitlab-Event-UUID", h.Get("X-Gitlab-Event-UUID")
	}
	if len(d.id) > MaxDeliveryIDBytes {
		return delivery{}, fmt.Errorf("header %s is %d bytes long, over the limit of %d: GitLab sends a UUID there", name, len(d.id), MaxDeliveryIDBytes)
	}
	return d, nil
}

// key is the dedup key of the delivery for triggerID.
func (d delivery) key(triggerID string) string { return triggerID + "/" + d.id }

// nameSuffix is extensions.delivery.name_suffix: 16 lowercase hex
// characters of SHA-256 over the trigger ID and the delivery ID (or, with
// no delivery ID or dedup off, the EventListener's event ID, unique per
// request). A TriggerTemplate naming its PipelineRun with it
// (metadata.name: build-$(extensions.delivery.name_suffix)) makes the API
// server refuse a second PipelineRun for the same delivery, whichever
// interceptor replica accepted it and across restarts. It is a valid
// DNS-1123 label and fits in any name: 64 bits, no collision in practice.
func nameSuffix(triggerID, deliveryID, eventID string) string {
	src := "delivery\x00" + triggerID + "\x00" + deliveryID
	switch {
	case deliveryID != "":
	case eventID != "":
		src = "event\x00" + triggerID + "\x00" + eventID
	default:
		// Nothing identifies the request: a random suffix, so that two
		// such requests never share a name.
		var b [8]byte
		rand.Read(b[:])
		return hex.EncodeToString(b[:])
	}
	sum := sha256.Sum256([]byte(src))
	return hex.EncodeToString(sum[:8])
}
