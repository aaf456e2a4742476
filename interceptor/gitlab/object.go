package gitlab

// Object is a JSON object as the decoder reads it: its members in the order
// of the body, without the map. Building a map[string]any for every object
// of a payload was most of the decoder's time and allocations; the typed
// readers (pushFromBody, mergeRequestFromBody) and the engine's fast path
// read a field by a scan of a few dozen keys instead, and Event.Body builds
// the maps once, when something needs the body as encoding/json would
// decode it (cel-go's body variable). docs/performance.md, "Fourth pass",
// has the figures.
//
// A key given twice reads as its last value, as in encoding/json. An
// Object is never modified once decoded.
type Object struct {
	members []member
}

// Get returns the value of key, and whether the object has it.
func (o *Object) Get(key string) (any, bool) {
	for i := len(o.members) - 1; i >= 0; i-- {
		if o.members[i].key == key {
			return o.members[i].val, true
		}
	}
	return nil, false
}

// field is Get's value alone (nil when absent), for fieldReader.
func (o *Object) field(key string) any {
	v, _ := o.Get(key)
	return v
}

// Len is the number of distinct keys: len of the map Body builds.
func (o *Object) Len() int {
	n := 0
	for i, m := range o.members {
		if !o.shadowed(i, m.key) {
			n++
		}
	}
	return n
}

// shadowed reports whether the member at i is given again later.
func (o *Object) shadowed(i int, key string) bool {
	for _, later := range o.members[i+1:] {
		if later.key == key {
			return true
		}
	}
	return false
}

// Range calls f with each key and its value, in the body's order, each key
// once (at its last value), until f returns false.
func (o *Object) Range(f func(key string, v any) bool) {
	for i, m := range o.members {
		if o.shadowed(i, m.key) {
			continue
		}
		if !f(m.key, m.val) {
			return
		}
	}
}

// Map returns the object as encoding/json decodes it into map[string]any:
// nested objects become maps too, and arrays holding objects new arrays.
func (o *Object) Map() map[string]any {
	m := make(map[string]any, len(o.members))
	for _, kv := range o.members {
		m[kv.key] = Plain(kv.val)
	}
	return m
}

// Plain returns a decoded value with every Object in it as a map (Map), the
// form encoding/json gives; a value holding no Object is returned as it is.
func Plain(v any) any {
	switch v := v.(type) {
	case *Object:
		return v.Map()
	case []any:
		if !hasObject(v) {
			return v
		}
		out := make([]any, len(v))
		for i, x := range v {
			out[i] = Plain(x)
		}
		return out
	}
	return v
}

// hasObject reports whether an Object is in l, at any depth.
func hasObject(l []any) bool {
	for _, x := range l {
		switch x := x.(type) {
		case *Object:
			return true
		case []any:
			if hasObject(x) {
				return true
			}
		}
	}
	return false
}

// fields is a JSON object as the typed readers see it: an *Object, or a
// map (mapFields) for callers that hold one.
type fields interface {
	field(key string) any
}

// mapFields is a map read through fields.
type mapFields map[string]any

func (m mapFields) field(key string) any { return m[key] }

// asFields returns v as fields when it is a JSON object.
func asFields(v any) (fields, bool) {
	switch v := v.(type) {
	case *Object:
		return v, true
	case map[string]any:
		return mapFields(v), true
	}
	return nil, false
}

// objectArena hands out the members of the objects of one parse from
// blocks, and the Objects themselves, so that a payload's objects take a
// few allocations in all.
type objectArena struct {
	members []member
	objects block[Object]
	// hint is the size of a block of members: about one per 40 bytes of
	// body, what GitLab's payloads hold.
	hint int
}

// object returns an Object holding a copy of items.
func (a *objectArena) object(items []member) *Object {
	if len(items) > cap(a.members)-len(a.members) {
		a.members = make([]member, 0, max(len(items), a.hint))
	}
	i := len(a.members)
	a.members = append(a.members, items...)
	return (*Object)(a.objects.put(Object{members: a.members[i : i+len(items) : i+len(items)]}, 16))
}
