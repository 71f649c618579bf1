"""Run reports: JUnit XML and the merged Playwright HTML report."""
