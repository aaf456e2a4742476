package podrunner

import (
	"encoding/base64"
	"fmt"
	"regexp"
	"strings"
)

// Names of the init containers Tekton's controller adds to a TaskRun's pod.
const (
	containerPrepare      = "prepare"
	containerPlaceScripts = "place-scripts"
	containerWorkingDir   = "working-dir-initializer"
)

// Script is a file the place-scripts init container writes.
type Script struct {
	// Path is the file's path in the pod, under /tekton/scripts.
	Path string
	// Content is the decoded script.
	Content []byte
}

var (
	scriptFileLine = regexp.MustCompile(`^scriptfile="([^"]+)"$`)
	heredocLine    = regexp.MustCompile(`^cat > \$\{scriptfile\} << '([^']+)'$`)
)

// ParsePlaceScripts decodes the scripts from the arguments of Tekton's
// place-scripts init container (`sh -c SCRIPT`), where each step script is
// written as
//
//	scriptfile="/tekton/scripts/script-0-abcde"
//	touch ${scriptfile} && chmod +x ${scriptfile}
//	cat > ${scriptfile} << '_EOF_'
//	BASE64
//	_EOF_
//	/tekton/bin/entrypoint decode-script "${scriptfile}"
//
// Anything else (Windows scripts, debug breakpoints) is an error: the runner
// does not guess.
func ParsePlaceScripts(command, args []string) ([]Script, error) {
	if len(command) != 1 || command[0] != "sh" || len(args) != 2 || args[0] != "-c" {
		return nil, fmt.Errorf("unexpected place-scripts command %q %q", command, args)
	}
	lines := strings.Split(args[1], "\n")
	var scripts []Script
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		if strings.TrimSpace(line) == "" {
			continue
		}
		m := scriptFileLine.FindStringSubmatch(line)
		if m == nil {
			return nil, fmt.Errorf("place-scripts line %d: unexpected %q", i+1, line)
		}
		path := m[1]
		if !strings.HasPrefix(path, "/tekton/scripts/") {
			return nil, fmt.Errorf("place-scripts line %d: script outside /tekton/scripts: %q", i+1, path)
		}
		if i+2 >= len(lines) || lines[i+1] != "touch ${scriptfile} && chmod +x ${scriptfile}" {
			return nil, fmt.Errorf("place-scripts line %d: expected the touch/chmod line after %q", i+2, line)
		}
		hd := heredocLine.FindStringSubmatch(lines[i+2])
		if hd == nil {
			return nil, fmt.Errorf("place-scripts line %d: expected a heredoc, got %q", i+3, lines[i+2])
		}
		end := -1
		for j := i + 3; j < len(lines); j++ {
			if lines[j] == hd[1] {
				end = j
				break
			}
		}
		if end < 0 {
			return nil, fmt.Errorf("place-scripts line %d: heredoc %q is not terminated", i+3, hd[1])
		}
		body := strings.Join(lines[i+3:end], "\n")
		if end+1 >= len(lines) || lines[end+1] != `/tekton/bin/entrypoint decode-script "${scriptfile}"` {
			return nil, fmt.Errorf("place-scripts line %d: expected decode-script after the heredoc of %s", end+2, path)
		}
		content, err := base64.StdEncoding.DecodeString(strings.ReplaceAll(body, "\n", ""))
		if err != nil {
			return nil, fmt.Errorf("decoding the script %s: %w", path, err)
		}
		scripts = append(scripts, Script{Path: path, Content: content})
		i = end + 1
	}
	return scripts, nil
}
