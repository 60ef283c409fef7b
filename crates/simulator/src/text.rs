//! Support conversation text: varied customer and agent messages built from templates.

use crate::rng::Rand;

/// What a support conversation is about; fixed by the order's fate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Topic {
    /// Between shipping and delivery.
    WhereIsMyOrder,
    /// Between delivery and the return.
    Return,
    /// Between placing and cancelling.
    Cancel,
    /// Before delivery.
    ProductQuestion,
    /// After delivery.
    DeliveryProblem,
}

/// What the messages may mention.
pub(crate) struct Context<'a> {
    pub(crate) order: &'a str,
    pub(crate) title: &'a str,
    pub(crate) agent_name: &'a str,
    pub(crate) lines: usize,
}

const AGENT_NAMES: &[&str] =
    &["Maya", "Jonas", "Priya", "Luca", "Amara", "Tom", "Sofia", "Kenji", "Elena", "Sam"];

pub(crate) fn agent_name(agent: usize) -> &'static str {
    AGENT_NAMES.get(agent % AGENT_NAMES.len()).copied().unwrap_or("Alex")
}

fn one(rng: &mut Rand, options: &[&str]) -> String {
    rng.pick(options).unwrap_or("").to_string()
}

fn fill(template: &str, cx: &Context<'_>) -> String {
    template
        .replace("{order}", cx.order)
        .replace("{title}", cx.title)
        .replace("{agent}", cx.agent_name)
        .replace("{items}", if cx.lines > 1 { "items" } else { "item" })
}

/// The messages of one conversation in order: customer first, then alternating. Two to four
/// messages.
pub(crate) fn conversation(topic: Topic, cx: &Context<'_>, rng: &mut Rand) -> Vec<String> {
    let greeting = one(rng, &["Hi, ", "Hello, ", "Hey, ", "Good morning, ", ""]);
    let opener = match topic {
        Topic::WhereIsMyOrder => one(
            rng,
            &[
                "where is my order {order}? It was supposed to arrive by now.",
                "I ordered the {title} a few days ago and the tracking page hasn't changed since yesterday. Order {order}.",
                "any update on order {order}? I need it before the weekend.",
                "where is my order {order}?? Still nothing here.",
                "could you check the status of {order}? The carrier says 'label created' only.",
            ],
        ),
        Topic::Return => one(
            rng,
            &[
                "I want to return the {title} from order {order}. It isn't what I expected.",
                "the {title} arrived damaged (box crushed, scratch on the side). Can I send it back? Order {order}.",
                "how do I return an item? Order {order}, the {title} - wrong size.",
                "I'd like to return order {order}, I changed my mind about the {title}.",
                "the {title} stopped working after two days. I want a refund, order {order}.",
            ],
        ),
        Topic::Cancel => one(
            rng,
            &[
                "please cancel order {order}, I ordered the wrong one.",
                "can I still cancel {order}? I found the {title} cheaper elsewhere.",
                "I placed order {order} by mistake, could you cancel it before it ships?",
                "cancel my order {order} please, the delivery date is too late for me.",
            ],
        ),
        Topic::ProductQuestion => one(
            rng,
            &[
                "does the {title} come with a warranty? Just ordered it ({order}).",
                "quick question about the {title} in order {order}: is it the newest version?",
                "can I change the delivery address for order {order}?",
                "will the {items} in order {order} ship together or separately?",
                "I was charged twice for order {order}, can you check?",
            ],
        ),
        Topic::DeliveryProblem => one(
            rng,
            &[
                "my order {order} shows as delivered but I can't find the parcel anywhere.",
                "order {order} arrived but the {title} is missing from the box.",
                "the parcel for {order} was left in the rain and the {title} got wet.",
                "I received someone else's {items} instead of my order {order}.",
            ],
        ),
    };
    let reply = match topic {
        Topic::WhereIsMyOrder => one(
            rng,
            &[
                "Thanks for reaching out! Order {order} left our warehouse and is with the carrier; it should reach you within 2-3 business days. - {agent}",
                "Sorry for the wait. I checked {order}: it is in transit and the carrier expects to deliver it soon. You'll get an email when it's out for delivery. - {agent}",
                "Hi! Your parcel for {order} is on its way; tracking updates can lag a day behind. I'll keep an eye on it for you. - {agent}",
            ],
        ),
        Topic::Return => one(
            rng,
            &[
                "I'm sorry to hear that. I've opened a return for order {order}; a prepaid shipping label is on its way to your inbox. - {agent}",
                "No problem, you can return the {title} within 30 days. I've emailed you a return label for {order}. - {agent}",
                "Sorry about that! Return for {order} is approved. Drop the parcel at any post office and we'll refund you once it arrives. - {agent}",
            ],
        ),
        Topic::Cancel => one(
            rng,
            &[
                "Done - order {order} is cancelled and any charge will be reversed within a few days. - {agent}",
                "I caught it before shipping: {order} is cancelled. Sorry it didn't work out! - {agent}",
                "Your order {order} has been cancelled. You'll receive a confirmation email shortly. - {agent}",
            ],
        ),
        Topic::ProductQuestion => one(
            rng,
            &[
                "Good question! The {title} comes with a 2-year manufacturer warranty. - {agent}",
                "I've checked order {order} and updated it for you; you'll see the change in your account. - {agent}",
                "Everything in {order} ships together from one warehouse. - {agent}",
                "Thanks for flagging this - I've looked into {order} and sorted it out. - {agent}",
            ],
        ),
        Topic::DeliveryProblem => one(
            rng,
            &[
                "I'm sorry! I've opened an investigation with the carrier for {order}; we'll get back to you within 48 hours. - {agent}",
                "That shouldn't happen. I'm sending a replacement for the {title} from order {order} today. - {agent}",
                "Apologies for the trouble with {order}. Could you send a photo of the parcel? Then I can arrange a refund. - {agent}",
            ],
        ),
    };
    let mut messages = vec![fill(&format!("{greeting}{opener}"), cx), fill(&reply, cx)];
    if let Some(first) = messages.first_mut()
        && greeting.is_empty()
    {
        // Capitalise when there was no greeting.
        let mut chars = first.chars();
        if let Some(c) = chars.next() {
            *first = c.to_uppercase().chain(chars).collect();
        }
    }
    let roll = rng.unit();
    if roll < 0.25 {
        messages.push(one(
            rng,
            &[
                "Thanks!",
                "Great, thank you for the quick answer.",
                "OK, thanks.",
                "Perfect, appreciate it 🙏",
            ],
        ));
    } else if roll < 0.45 {
        let (question, answer) = match topic {
            Topic::Return => (
                "Thanks. When will I get my refund?",
                "Refunds are issued within 3-5 business days after the item reaches us. - {agent}",
            ),
            Topic::Cancel => (
                "Will I get an email confirming the cancellation?",
                "Yes, the confirmation email for {order} is on its way. - {agent}",
            ),
            _ => (
                "OK. And what if it doesn't arrive by Friday?",
                "Then just reply here and I'll send a replacement or refund {order} right away. - {agent}",
            ),
        };
        messages.push(question.to_string());
        messages.push(fill(answer, cx));
    }
    messages
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversations_mention_the_order_and_vary() {
        let mut rng = Rand::new(3);
        let cx =
            Context { order: "sim-o7", title: "Auralis Wireless Headphones", agent_name: "Maya", lines: 1 };
        let mut openers = std::collections::BTreeSet::new();
        for topic in [
            Topic::WhereIsMyOrder,
            Topic::Return,
            Topic::Cancel,
            Topic::ProductQuestion,
            Topic::DeliveryProblem,
        ] {
            for _ in 0..20 {
                let msgs = conversation(topic, &cx, &mut rng);
                assert!((2..=4).contains(&msgs.len()));
                assert!(msgs.iter().all(|m| !m.trim().is_empty() && !m.contains('{')), "{msgs:?}");
                assert!(msgs[1].ends_with("- Maya"), "{msgs:?}");
                openers.insert(msgs[0].clone());
            }
        }
        assert!(openers.len() > 30, "{}", openers.len());
    }
}
