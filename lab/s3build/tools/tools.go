//go:build tools

// Package tools pins SeaweedFS in this module's go.mod (make s3-bins builds
// github.com/seaweedfs/seaweedfs/weed from it); it is never compiled.
package tools

import _ "github.com/seaweedfs/seaweedfs/weed"
