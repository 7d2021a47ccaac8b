#!/bin/bash
# Sourced by config.sh from the runner root: records PATH in .path and copies a few
# well-known variables into .env (when set and not already there); the listener loads
# .env at startup, so jobs see them.

touch .env
for name in LANG JAVA_HOME ANT_HOME M2_HOME ANDROID_HOME ANDROID_SDK_ROOT GRADLE_HOME \
    NVM_BIN NVM_PATH LD_LIBRARY_PATH PERL5LIB; do
    value="${!name}"
    if [ -n "$value" ] && ! grep -q "^${name}=" .env; then
        echo "${name}=${value}" >> .env
    fi
done

echo "$PATH" > .path
