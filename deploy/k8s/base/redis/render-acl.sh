#!/bin/sh
# Render users.acl with real password hashes; Redis's ACL files cannot hold comments.
# Usage: VOXMESH_REDIS_ADMIN_PASSWORD=... VOXMESH_REDIS_ORCHESTRATOR_PASSWORD=... \
#        VOXMESH_REDIS_LLM_PASSWORD=... VOXMESH_REDIS_AUDITOR_PASSWORD=... \
#        deploy/redis/render-acl.sh > /etc/redis/users.acl
# Then: redis-server --aclfile /etc/redis/users.acl   (see docs/audit.md)
set -eu
here=$(dirname "$0")
sha() { printf %s "$1" | sha256sum | cut -d' ' -f1; }
need() { eval "v=\${$1:-}"; [ -n "$v" ] || { echo "render-acl.sh: $1 is not set" >&2; exit 1; }; sha "$v"; }
admin=$(need VOXMESH_REDIS_ADMIN_PASSWORD)
orchestrator=$(need VOXMESH_REDIS_ORCHESTRATOR_PASSWORD)
llm=$(need VOXMESH_REDIS_LLM_PASSWORD)
auditor=$(need VOXMESH_REDIS_AUDITOR_PASSWORD)
sed -e "s/@ADMIN_PASSWORD_SHA256@/$admin/" \
    -e "s/@ORCHESTRATOR_PASSWORD_SHA256@/$orchestrator/" \
    -e "s/@LLM_PASSWORD_SHA256@/$llm/" \
    -e "s/@AUDITOR_PASSWORD_SHA256@/$auditor/" \
    "$here/users.acl"
