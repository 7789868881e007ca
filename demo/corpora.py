"""Deterministic topic corpora of real English prompts: templates filled with Faker and word lists.

Four topics a support-desk adapter could see: ``support`` (billing and accounts), ``cooking``,
``programming`` and ``travel``. Each template has several slots, so a few thousand prompts per topic are
mostly distinct while staying unmistakably on topic. The same seed always gives the same prompts.
"""

from __future__ import annotations

import random
from string import Formatter

from faker import Faker

PLANS = ["Basic", "Pro", "Team", "Enterprise", "Family", "Student", "annual", "monthly", "premium"]
PRODUCTS = ["router", "headphones", "laptop stand", "phone case", "smart watch", "coffee grinder", "desk lamp"]
PAYMENT = ["Visa card", "Mastercard", "PayPal account", "bank transfer", "Apple Pay", "gift card", "Amex"]
ACCOUNT_ISSUES = [
    "I can't log in",
    "my password reset email never arrives",
    "two-factor codes are rejected",
    "my account was locked",
    "I see someone else's orders",
    "my profile email is wrong",
]
SUPPORT = [
    "I was charged twice for my {plan} subscription on {date}. Can you refund {amount}?",
    "Why is my invoice {invoice} for {amount} higher than last month?",
    "Please cancel my {plan} plan, my name is {name} and my account email is {email}.",
    "My {payment} was declined when renewing the {plan} plan, what should I do?",
    "{issue} since {date}. Account email: {email}.",
    "How do I change the billing address on my account to {address}?",
    "I ordered a {product} on {date} (order {invoice}) and it never arrived. I want a refund.",
    "Can I get a VAT invoice for order {invoice} addressed to {company}?",
    "The {product} I received is broken, how do I return it and get my {amount} back?",
    "Hi, this is {name} from {company}. We need to add 5 seats to our {plan} subscription.",
    "Why was I billed {amount} after my free trial ended? I cancelled on {date}.",
    "{issue}. I need to download my receipts for {year} for my taxes.",
    "Can you switch my subscription from {plan} to {plan2} starting next billing cycle?",
    "Your support agent promised a credit of {amount} on {date} but I don't see it on my statement.",
    "How do I remove my old {payment} and add a new one?",
    "Is there a discount if I pay for the {plan} plan yearly instead of monthly?",
    "I want to close my account and have all my personal data deleted. Email: {email}",
    "The promo code I entered on {date} didn't apply, I paid {amount} instead of the discounted price.",
    "Where can I find my customer number? I'm {name} and I live at {address}.",
    "My refund for order {invoice} was approved but the money is not back on my {payment} yet.",
]

DISHES = ["lasagna", "risotto", "banana bread", "chicken curry", "sourdough", "pad thai", "ramen", "paella", "chili"]
INGREDIENTS = ["butter", "eggs", "buttermilk", "heavy cream", "garlic", "fresh basil", "brown sugar", "tofu", "saffron"]
MEATS = ["pork shoulder", "whole chicken", "beef brisket", "leg of lamb", "turkey breast", "salmon fillet"]
DIETS = ["vegan", "gluten-free", "keto", "dairy-free", "low-sodium", "vegetarian"]
COOKING = [
    "How long should I roast a {weight} kg {meat} at {temp} degrees?",
    "What can I substitute for {ingredient} in {dish}?",
    "Give me a {diet} recipe for {dish} that serves {n}.",
    "My {dish} always comes out too dry, what am I doing wrong?",
    "Can I freeze {dish} and how do I reheat it?",
    "What wine goes well with {dish}?",
    "I have {ingredient}, {ingredient2} and rice in the fridge. What can I cook tonight?",
    "How do I make {dish} without an oven?",
    "Is it safe to eat {meat} that was left out for {n} hours?",
    "Convert this recipe for {dish} from cups to grams, it uses 2 cups of flour and 1 cup of {ingredient}.",
    "What's the difference between baking soda and baking powder in {dish}?",
    "How do I keep my {dish} from sticking to the pan?",
    "Plan a {diet} dinner menu for {n} guests with a starter, main course and dessert.",
    "How much {ingredient} do I need to make {dish} for {n} people?",
    "Why did my {dish} collapse after I took it out of the oven at {temp} degrees?",
    "What spices make {dish} taste more authentic?",
    "Can I use a slow cooker for {meat}? How many hours on low?",
    "My grandmother from {country} made the best {dish}; how would a cook there prepare it?",
    "Suggest a quick {diet} lunch I can prepare in {n} minutes.",
    "How do I sharpen a chef's knife before cutting {meat}?",
]

LANGUAGES = ["Python", "JavaScript", "TypeScript", "Rust", "Go", "Java", "C++", "Kotlin", "SQL", "Bash"]
ERRORS = ["KeyError", "NullPointerException", "segmentation fault", "TypeError", "deadlock", "stack overflow"]
TASKS = [
    "read a CSV file",
    "parse JSON from an HTTP response",
    "sort a list of objects by date",
    "run tasks concurrently",
    "write unit tests with mocks",
    "connect to PostgreSQL",
    "deduplicate records",
    "stream a large file line by line",
    "retry a failing network call with backoff",
]
LIBS = ["pandas", "React", "numpy", "Django", "Spring", "tokio", "Express", "FastAPI", "SQLAlchemy", "pytest"]
PROGRAMMING = [
    "How do I {task} in {lang}?",
    "Why does my {lang} code raise a {error} when I {task}?",
    "Explain the difference between a process and a thread in {lang}.",
    "Refactor this {lang} function so it can {task} without blocking.",
    "What's the idiomatic way to handle errors in {lang} when I {task}?",
    "My {lib} app gets a {error} under load. How do I debug it?",
    "Write a {lang} function named {func} that can {task}.",
    "How do I upgrade {lib} to the latest version without breaking my {lang} project?",
    "Review my {lang} code: the variable {func} is shadowed inside a loop and tests fail.",
    "What's the time complexity of {func} if it loops over {n} nested lists?",
    "How do I configure {lib} logging to write JSON to a file?",
    "Compare {lib} and {lib2} for a new {lang} service.",
    "Git says my branch {func} has diverged from main. How do I rebase safely?",
    "Set up a CI pipeline that runs {lib} tests for a {lang} repository.",
    "Why is my SQL query with {n} joins so slow and how do I add an index?",
    "Translate this {lang} snippet to {lang2}: it has to {task}.",
    "How can I profile memory usage of a {lang} program that uses {lib}?",
    "Write a regular expression that validates an email like {email}.",
    "What does the {error} stack trace mean in my {lib} test suite?",
    "How do I package a {lang} CLI tool and publish it?",
]

TRAVEL = [
    "What are the best things to do in {city} for {n} days?",
    "Is it cheaper to fly or take the train from {city} to {city2}?",
    "Do I need a visa to visit {country} with a passport from {country2}?",
    "Plan a {n}-day itinerary through {country} on a budget.",
    "What's the weather like in {city} in {month}?",
    "Which neighbourhood in {city} is safest to book a hotel?",
    "How much cash should I bring to {country} for a week?",
    "My flight to {city} on {date} was cancelled; what are my rights to compensation?",
    "Recommend family-friendly hiking trails near {city}.",
    "What should I pack for a trip to {country} in {month}?",
    "How do I get from the airport to downtown {city} late at night?",
    "Is travel insurance worth it for a {n}-day trip to {country}?",
    "What local dishes should I try when visiting {city}?",
    "Can I rent a car in {country} with a licence from {country2}?",
    "What are the must-see museums in {city}?",
]

TOPICS = {"support": SUPPORT, "cooking": COOKING, "programming": PROGRAMMING, "travel": TRAVEL}


def prompts(topic: str, count: int, seed: int = 0) -> list[str]:
    """``count`` prompts on ``topic``; the same (topic, count, seed) always gives the same list."""
    rng = random.Random(f"{topic}:{seed}")
    fake = Faker("en_US")
    fake.seed_instance(rng.randrange(2**32))
    out = []
    for _ in range(count):
        template = rng.choice(TOPICS[topic])
        names = sorted({name for _, name, _, _ in Formatter().parse(template) if name})
        out.append(template.format(**{name: SLOTS[name](rng, fake) for name in names}))
    return out


def _date(rng: random.Random, fake: Faker) -> str:
    return fake.date_this_year().strftime(rng.choice(["%B %d", "%d/%m/%Y", "%Y-%m-%d"]))


def _one_of(words: list[str]):
    return lambda rng, _fake: rng.choice(words)


# Slot name → how to fill it. Only the slots a template names are drawn (Faker is slow).
SLOTS = {
    "plan": _one_of(PLANS),
    "plan2": _one_of(PLANS),
    "date": _date,
    "amount": lambda rng, _: f"${rng.randint(5, 900)}.{rng.randint(0, 99):02d}",
    "invoice": lambda rng, _: f"#{rng.randint(10000, 999999)}",
    "name": lambda _, fake: fake.name(),
    "email": lambda _, fake: fake.email(),
    "address": lambda _, fake: fake.address().replace("\n", ", "),
    "company": lambda _, fake: fake.company(),
    "payment": _one_of(PAYMENT),
    "product": _one_of(PRODUCTS),
    "issue": _one_of(ACCOUNT_ISSUES),
    "year": lambda rng, _: rng.randint(2019, 2025),
    "dish": _one_of(DISHES),
    "ingredient": _one_of(INGREDIENTS),
    "ingredient2": _one_of(INGREDIENTS),
    "meat": _one_of(MEATS),
    "diet": _one_of(DIETS),
    "weight": lambda rng, _: round(rng.uniform(0.5, 5), 1),
    "temp": lambda rng, _: rng.choice([160, 175, 180, 200, 220, 350, 400, 425]),
    "n": lambda rng, _: rng.randint(2, 12),
    "country": lambda _, fake: fake.country(),
    "country2": lambda _, fake: fake.country(),
    "lang": _one_of(LANGUAGES),
    "lang2": _one_of(LANGUAGES),
    "lib": _one_of(LIBS),
    "lib2": _one_of(LIBS),
    "error": _one_of(ERRORS),
    "task": _one_of(TASKS),
    "func": lambda _, fake: f"{fake.word()}_{fake.word()}",
    "city": lambda _, fake: fake.city(),
    "city2": lambda _, fake: fake.city(),
    "month": lambda _, fake: fake.month_name(),
}
