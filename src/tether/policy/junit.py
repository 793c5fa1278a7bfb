"""``tether policy test --format junit``: JUnit XML, the report format CI systems read.

One ``<testsuite>`` per file; a case is a ``<testcase>``, with a ``<failure>`` when an
expectation did not hold. A problem (a bad case, a bad case file, a policy that does not load)
is a ``<testcase>`` named after its place with an ``<error>``, so CI shows it next to the cases.
"""

from __future__ import annotations

from xml.etree.ElementTree import Element, SubElement, tostring

from tether.policy.testing import SuiteReport


def junit_xml(report: SuiteReport, *, name: str = "tether policy test") -> str:
    """The report as a JUnit XML document."""
    suites: dict[str, Element] = {}
    root = Element("testsuites", name=name)

    def suite(file: str) -> Element:
        if file not in suites:
            suites[file] = SubElement(root, "testsuite", name=file)
        return suites[file]

    for result in report.results:
        file = result.path or result.file
        attributes = {"name": result.name, "classname": result.file, "file": file}
        if result.line is not None:
            attributes["line"] = str(result.line)
        case = SubElement(suite(file), "testcase", attributes)
        if not result.passed:
            failure = SubElement(case, "failure", message="; ".join(result.problems))
            failure.set("type", "expectation")
            failure.text = result.describe()
    for problem in report.problems:
        attributes = {"name": problem.where, "classname": problem.file, "file": problem.file}
        if problem.line is not None:
            attributes["line"] = str(problem.line)
        case = SubElement(suite(problem.file), "testcase", attributes)
        error = SubElement(case, "error", message=problem.message, type="invalid")
        error.text = str(problem)
    for element in [root, *suites.values()]:
        cases = element.iter("testcase")
        counted = list(cases)
        element.set("tests", str(len(counted)))
        element.set("failures", str(sum(c.find("failure") is not None for c in counted)))
        element.set("errors", str(sum(c.find("error") is not None for c in counted)))
    return tostring(root, encoding="unicode", xml_declaration=True) + "\n"
