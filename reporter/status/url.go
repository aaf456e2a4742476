package status

import (
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"text/template"
)

// URLData is what a target URL template can use.
type URLData struct {
	Cluster    string // name of the cluster (kubeconfig file) the run is in
	Namespace  string
	Name       string // PipelineRun name
	UID        string
	Pipeline   string
	ProjectID  string
	Project    string // path_with_namespace
	ProjectURL string
	SHA        string
	Ref        string
}

// URLTemplate renders the target_url of a commit status: a Go text/template
// over URLData, for instance the Tekton Dashboard's
//
//	https://tekton.example.com/#/namespaces/{{.Namespace}}/pipelineruns/{{.Name}}
//
// or one dashboard per cluster:
//
//	https://dashboard.{{.Cluster}}.example.com/#/namespaces/{{.Namespace}}/pipelineruns/{{.Name}}
//
// Besides the built-in functions (urlquery among them), pathescape escapes a
// path segment.
type URLTemplate struct {
	t *template.Template
}

// ParseURLTemplate parses and checks a target URL template: it must render,
// for sample data, an absolute http or https URL.
func ParseURLTemplate(text string) (*URLTemplate, error) {
	if strings.TrimSpace(text) == "" {
		return nil, errors.New("target URL template is empty")
	}
	t, err := template.New("target_url").Option("missingkey=error").
		Funcs(template.FuncMap{"pathescape": url.PathEscape}).Parse(text)
	if err != nil {
		return nil, fmt.Errorf("parsing target URL template: %w", err)
	}
	u := &URLTemplate{t: t}
	sample := URLData{
		Cluster: "cluster", Namespace: "namespace", Name: "name", UID: "00000000-0000-0000-0000-000000000000",
		Pipeline: "pipeline", ProjectID: "1", Project: "group/project", ProjectURL: "https://gitlab.example.com/group/project",
		SHA: strings.Repeat("0", 40), Ref: "main",
	}
	if _, err := u.render(sample); err != nil {
		return nil, fmt.Errorf("checking target URL template: %w", err)
	}
	return u, nil
}

// Render renders the URL for d. It fails when the result is not an absolute
// http(s) URL or is longer than GitLab accepts (MaxLength characters).
func (u *URLTemplate) Render(d URLData) (string, error) {
	s, err := u.render(d)
	if err != nil {
		return "", fmt.Errorf("rendering target URL for %s/%s: %w", d.Namespace, d.Name, err)
	}
	return s, nil
}

func (u *URLTemplate) render(d URLData) (string, error) {
	var b bytes.Buffer
	if err := u.t.Execute(&b, d); err != nil {
		return "", err
	}
	s := strings.TrimSpace(b.String())
	p, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("result %q is not a URL: %w", s, err)
	}
	if (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
		return "", fmt.Errorf("result %q is not an absolute http(s) URL", s)
	}
	if n := len([]rune(s)); n > MaxLength {
		return "", fmt.Errorf("result is %d characters long, GitLab accepts at most %d", n, MaxLength)
	}
	return s, nil
}
