/**
 * CI job token claim sets as GitHub's and GitLab's documentation show them ("OIDC token claims" in GitHub's
 * OpenID Connect reference; "Token payload" in GitLab's ID token authentication page), with the jobs the
 * tests need derived from them: a main-branch push, a pull request, a pull_request_target (base branch
 * ref, fork code), a GitLab fork merge request. iss/aud/iat/nbf/exp are set by the issuer that mints them.
 */

/** GitHub's example token, on a push to main (its documented example is a workflow_dispatch in environment prod). */
export const GITHUB_MAIN_PUSH: Readonly<Record<string, unknown>> = Object.freeze({
  jti: 'example-id',
  sub: 'repo:octo-org/octo-repo:ref:refs/heads/main',
  ref: 'refs/heads/main',
  sha: 'example-sha',
  repository: 'octo-org/octo-repo',
  repository_owner: 'octo-org',
  actor_id: '12',
  repository_visibility: 'private',
  repository_id: '74',
  repository_owner_id: '65',
  run_id: '5839275712',
  run_number: '10',
  run_attempt: '2',
  runner_environment: 'github-hosted',
  actor: 'octocat',
  workflow: 'example-workflow',
  head_ref: '',
  base_ref: '',
  event_name: 'push',
  ref_type: 'branch',
  ref_protected: 'true',
  workflow_ref: 'octo-org/octo-repo/.github/workflows/oidc.yml@refs/heads/main',
  workflow_sha: 'example-sha',
  job_workflow_ref: 'octo-org/octo-automation/.github/workflows/oidc.yml@refs/heads/main',
  job_workflow_sha: 'example-sha',
});

/** A pull_request job: ref is the PR's merge ref. */
export const GITHUB_PULL_REQUEST: Readonly<Record<string, unknown>> = Object.freeze({
  ...GITHUB_MAIN_PUSH,
  sub: 'repo:octo-org/octo-repo:pull_request',
  ref: 'refs/pull/7/merge',
  head_ref: 'feature',
  base_ref: 'main',
  event_name: 'pull_request',
  ref_protected: 'false',
  workflow_ref: 'octo-org/octo-repo/.github/workflows/oidc.yml@refs/pull/7/merge',
});

/** pull_request_target: the base branch's ref (refs/heads/main) while the workflow may build fork code. */
export const GITHUB_PULL_REQUEST_TARGET: Readonly<Record<string, unknown>> = Object.freeze({
  ...GITHUB_MAIN_PUSH,
  sub: 'repo:octo-org/octo-repo:pull_request',
  head_ref: 'mallory:feature',
  base_ref: 'main',
  event_name: 'pull_request_target',
});

/** GitLab's documented example payload (a push pipeline on a feature branch of my-group/my-project). */
export const GITLAB_FEATURE_PUSH: Readonly<Record<string, unknown>> = Object.freeze({
  namespace_id: '72',
  namespace_path: 'my-group',
  project_id: '20',
  project_path: 'my-group/my-project',
  user_id: '1',
  user_login: 'sample-user',
  user_email: 'sample-user@example.com',
  user_access_level: 'owner',
  pipeline_id: '574',
  pipeline_source: 'push',
  job_id: '302',
  ref: 'feature-branch-1',
  ref_type: 'branch',
  ref_path: 'refs/heads/feature-branch-1',
  ref_protected: 'false',
  groups_direct: ['my-group/my-subgroup', 'my-other-group'],
  environment: 'test-environment2',
  environment_protected: 'false',
  deployment_tier: 'testing',
  environment_action: 'start',
  runner_id: 1,
  runner_environment: 'self-hosted',
  sha: '714a629c0b401fdce83e847fc9589983fc6f46bc',
  project_visibility: 'public',
  ci_config_ref_uri: 'gitlab.example.com/my-group/my-project//.gitlab-ci.yml@refs/heads/feature-branch-1',
  ci_config_sha: '714a629c0b401fdce83e847fc9589983fc6f46bc',
  jti: '235b3a54-b797-45c7-ae9a-f72d7bc6ef5b',
  sub: 'project_path:my-group/my-project:ref_type:branch:ref:feature-branch-1',
});

/** The same project's deploy job on its protected main branch. */
export const GITLAB_MAIN_DEPLOY: Readonly<Record<string, unknown>> = Object.freeze({
  ...GITLAB_FEATURE_PUSH,
  pipeline_id: '575',
  job_id: '310',
  ref: 'main',
  ref_path: 'refs/heads/main',
  ref_protected: 'true',
  environment: 'production',
  environment_protected: 'true',
  deployment_tier: 'production',
  ci_config_ref_uri: 'gitlab.example.com/my-group/my-project//.gitlab-ci.yml@refs/heads/main',
  sub: 'project_path:my-group/my-project:ref_type:branch:ref:main',
});

/**
 * A merge request from a fork (mallory/my-project) whose pipeline runs in my-group/my-project: since GitLab's
 * fix, the project claims name the fork, while ci_config_ref_uri names the project whose pipeline runs.
 */
export const GITLAB_FORK_MR: Readonly<Record<string, unknown>> = Object.freeze({
  ...GITLAB_FEATURE_PUSH,
  namespace_id: '990',
  namespace_path: 'mallory',
  project_id: '991',
  project_path: 'mallory/my-project',
  user_login: 'mallory',
  pipeline_id: '580',
  pipeline_source: 'merge_request_event',
  job_id: '320',
  ref: 'main',
  ref_path: 'refs/merge-requests/7/head',
  ci_config_ref_uri: 'gitlab.example.com/my-group/my-project//.gitlab-ci.yml@refs/merge-requests/7/head',
  sub: 'project_path:mallory/my-project:ref_type:branch:ref:main',
});
