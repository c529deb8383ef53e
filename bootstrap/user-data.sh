#!/bin/bash
# EC2 user data (Ubuntu 24.04 AMI): turns the new instance into a PBX managed by pbx-agent.
# Set the values below; nothing else needs editing. The bootstrap logs to
# /var/log/pbx-agent-bootstrap.log (cloud-init also keeps /var/log/cloud-init-output.log), and its
# last line says whether it worked. With an ssh config repo, that output also holds the deploy key
# to add to the repo: read it with `aws ec2 get-console-output --latest --instance-id i-...` or on
# the host with `sudo tail -n 30 /var/log/pbx-agent-bootstrap.log`.
# User data can be read by anything on the instance that reaches IMDS: keep secrets out of it
# (the webhook secret is generated on the host; read it with sudo cat /etc/pbx-agent/webhook.secret).
set -euo pipefail

# The release to install (`npm pack` of a pbx-agent checkout) and its sha256 (sha256sum FILE).
PBX_AGENT_RELEASE=https://github.com/acme/pbx-agent/releases/download/v0.1.0/pbx-agent-0.1.0.tgz
PBX_AGENT_SHA256=0000000000000000000000000000000000000000000000000000000000000000
CONFIG_REPO=git@github.com:acme/pbx-config.git # the config repo the agent follows
CONFIG_BRANCH=main

rm -rf /usr/local/src/pbx-agent
mkdir -p /usr/local/src/pbx-agent
curl -fsSL --proto '=https' --tlsv1.2 --retry 5 -o /usr/local/src/pbx-agent.tgz "$PBX_AGENT_RELEASE"
echo "$PBX_AGENT_SHA256  /usr/local/src/pbx-agent.tgz" | sha256sum --check --quiet -
tar -xzf /usr/local/src/pbx-agent.tgz -C /usr/local/src/pbx-agent
exec /usr/local/src/pbx-agent/package/bootstrap/bootstrap.sh \
  --repo "$CONFIG_REPO" \
  --branch "$CONFIG_BRANCH" \
  --webhook-listen 0.0.0.0:9090 \
  --eip-policy alert \
  --file-policy restore
