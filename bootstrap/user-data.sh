#!/bin/bash
# EC2 user data (Ubuntu 24.04 AMI): turns the new instance into a PBX managed by pbx-agent.
# Set the four values below; nothing else needs editing. The bootstrap logs to
# /var/log/pbx-agent-bootstrap.log (cloud-init also keeps /var/log/cloud-init-output.log), and its
# last line says whether it worked. With an ssh config repo, that output also holds the deploy key
# to add to the repo: read it with `aws ec2 get-console-output --latest --instance-id i-...` or on
# the host with `sudo tail -n 30 /var/log/pbx-agent-bootstrap.log`.
# User data can be read by anything on the instance that reaches IMDS: keep secrets out of it
# (the webhook secret is generated on the host; read it with sudo cat /etc/pbx-agent/webhook.secret).
set -euo pipefail

PBX_AGENT_GIT=https://github.com/acme/pbx-agent.git # pbx-agent's own source
PBX_AGENT_TAG=v0.1.0                                # the release (tag) to install
CONFIG_REPO=git@github.com:acme/pbx-config.git      # the config repo the agent follows
CONFIG_BRANCH=main

export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=600 -q update
apt-get -o DPkg::Lock::Timeout=600 -q -y install git ca-certificates
rm -rf /usr/local/src/pbx-agent
git clone --quiet --depth 1 --branch "$PBX_AGENT_TAG" "$PBX_AGENT_GIT" /usr/local/src/pbx-agent
exec /usr/local/src/pbx-agent/bootstrap/bootstrap.sh \
  --repo "$CONFIG_REPO" \
  --branch "$CONFIG_BRANCH" \
  --webhook-listen 0.0.0.0:9090 \
  --eip-policy alert \
  --file-policy restore
